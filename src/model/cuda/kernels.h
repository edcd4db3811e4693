// Small CUDA kernels of the reference model (docs/reference-model.md); the
// matrix products go through cuBLAS in cuda_model.cc. Every launcher only
// enqueues on `stream` (so a denoise call can be graph-captured) and throws
// Error{kBackend} when the launch fails. bf16 storage, fp32 arithmetic.
// Private to the nccl backend library.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace lockstep::cuda_model {

using bf16 = __nv_bfloat16;

// Layout of the device-resident scalars a call reads, so a captured graph can
// be replayed with another timestep or bias.
struct CallParams {
  float t;
  float attention_bias;
};

// Weights exactly as docs/reference-model.md (and the CPU model) compute them:
// c = 2u - 1 in double for element (row, col) of tensor_id, with row and col
// in full-tensor coordinates (a shard passes its offsets); vectors are row 0.
// Matrices: c / sqrt(fan_in), rounded to float, stored row-major as bf16.
void generate_matrix(bf16* out, int rows, int cols, int row_offset, int col_offset,
                     std::uint64_t seed, std::uint64_t tensor_id, double fan_in,
                     cudaStream_t stream);
// A vector [n] at columns col_offset.. as fp32: c / sqrt(fan_in).
void generate_scaled_vector(float* out, int n, int col_offset, std::uint64_t seed,
                            std::uint64_t tensor_id, double fan_in, cudaStream_t stream);
// A norm gain [n] at columns col_offset.. as fp32: 1 + 0.1 c.
void generate_gain(float* out, int n, int col_offset, std::uint64_t seed, std::uint64_t tensor_id,
                   cudaStream_t stream);

void set_call_params(CallParams* params, float t, float attention_bias, cudaStream_t stream);
// x[n, d] += params->t * t_embed[d]
void add_time_embed(float* x, const float* t_embed, const CallParams* params, int rows, int dim,
                    cudaStream_t stream);
// out = rmsnorm(x) ⊙ gain, per row of dim elements.
void rmsnorm_gain(const float* x, const float* gain, bf16* out, int rows, int dim,
                  cudaStream_t stream);
// sums[r] = Σ_c in[r, c]²
void row_sum_squares(const float* in, float* sums, int rows, int cols, cudaStream_t stream);
// out[r, c] = in[r, c] / sqrt(sums[r] / full_dim + eps) * gain[c]
void qk_normalize(const float* in, const float* sums, const float* gain, bf16* out, int rows,
                  int cols, int full_dim, cudaStream_t stream);
void to_bf16(const float* in, bf16* out, std::size_t count, cudaStream_t stream);
// out[f * tokens + i, :] = ring[slots[f] * tokens + i, :] for f < frames.
void gather_frames(const bf16* ring, const int* slots, bf16* out, int frames, int tokens_per_frame,
                   int cols, cudaStream_t stream);
// slots[i] = (head + i) % window for i < frames: the ring order read by
// gather_frames, set by a kernel so no host buffer must outlive the launch.
void set_ring_slots(int* slots, int head, int frames, int window, cudaStream_t stream);
// probs = softmax_row(scores + bias_j) for `rows` rows of length keys, where
// bias_j = params->attention_bias for j < cached_keys and 0 otherwise.
void softmax_with_bias(const float* scores, bf16* probs, int rows, int keys, int cached_keys,
                       const CallParams* params, cudaStream_t stream);
void gelu_tanh(const float* in, bf16* out, std::size_t count, cudaStream_t stream);
// x += y
void add_into(float* x, const bf16* y, std::size_t count, cudaStream_t stream);

// ---- a chunk's tensors outside the layers (Stage 0 on its own GPU)

// out[i] = (2u - 1) · scale with u from splitmix64(seed ^ (stream_id << 32) ^ i),
// in double like the host: Stage 0's inputs on the GPU are the CPU Stage 0's
// values bit for bit.
void fill_uniform(float* out, std::size_t count, std::uint64_t seed, std::uint64_t stream_id, float scale,
                  cudaStream_t stream);
// out[b] = XXH64(block b of `block_bytes`, seed b), the last block possibly
// short: the device half of digest_tensor (lockstep/digest.h).
void tensor_block_digests(const void* data, std::size_t bytes, std::size_t block_bytes, std::uint64_t* out,
                          cudaStream_t stream);
// A 3×3 convolution, zero padding, [c_in, h, w] → [c_out, h, w], weights
// [c_out, c_in, 3, 3], with SiLU when `silu`.
void conv3x3(const float* in, float* out, const float* weights, const float* bias, int c_in, int c_out, int h,
             int w, bool silu, cudaStream_t stream);
// Nearest-neighbour ×2: [channels, h, w] → [channels, 2h, 2w].
void upsample2x(const float* in, float* out, int channels, int h, int w, cudaStream_t stream);

}  // namespace lockstep::cuda_model
