#include <cmath>
#include <string>

#include "backends/nccl/cuda_check.h"
#include "model/cuda/kernels.h"

namespace lockstep::cuda_model {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int kElementwiseBlocksMax = 65535;
constexpr float kNormEps = 1e-6f;
constexpr double kGainHalfWidth = 0.1;
constexpr float kGeluCoefficient = 0.044715f;
constexpr float kSqrtTwoOverPi = 0.7978845608028654f;
// 2^-53: maps the top 53 bits of a 64-bit hash onto [0, 1).
constexpr double kUnitScale = 1.1102230246251565e-16;

__device__ std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 2u - 1 in [-1, 1), u from the top 53 bits of `hash`; computed in double
// (no contraction) like the CPU's signed_unit, so both round the same value once.
__device__ double signed_unit(std::uint64_t hash) {
  const double u = __dmul_rn(static_cast<double>(hash >> 11), kUnitScale);
  return __dadd_rn(__dmul_rn(2.0, u), -1.0);
}

// signed_unit for element (row, col) of tensor_id.
__device__ double signed_unit(std::uint64_t seed, std::uint64_t tensor_id, std::uint64_t row,
                              std::uint64_t col) {
  return signed_unit(splitmix64(seed ^ (tensor_id << 56) ^ (row << 28) ^ col));
}

int blocks_for(std::size_t count) {
  const std::size_t blocks = (count + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<int>(blocks < kElementwiseBlocksMax ? blocks : kElementwiseBlocksMax);
}

void check_launch(const char* kernel) {
  cuda_detail::check_cuda(cudaGetLastError(), (std::string("launch ") + kernel).c_str());
}

// Block-wide sum; every thread gets the total. REQUIRES blockDim.x == kThreadsPerBlock.
__device__ float block_sum(float value) {
  __shared__ float partial[kThreadsPerBlock / 32];
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = value;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kThreadsPerBlock / 32; ++w) total += partial[w];
  __syncthreads();  // partial is reused by the next call
  return total;
}

__device__ float block_max(float value) {
  __shared__ float partial[kThreadsPerBlock / 32];
  for (int offset = 16; offset > 0; offset /= 2) {
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = value;
  __syncthreads();
  float best = partial[0];
  for (int w = 1; w < kThreadsPerBlock / 32; ++w) best = fmaxf(best, partial[w]);
  __syncthreads();
  return best;
}

__global__ void generate_matrix_kernel(bf16* out, int rows, int cols, int row_offset,
                                       int col_offset, std::uint64_t seed, std::uint64_t tensor_id,
                                       double sqrt_fan_in) {
  const std::size_t count = static_cast<std::size_t>(rows) * cols;
  for (std::size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::uint64_t row = row_offset + i / cols;
    const std::uint64_t col = col_offset + i % cols;
    out[i] =
        __float2bfloat16(static_cast<float>(__ddiv_rn(signed_unit(seed, tensor_id, row, col), sqrt_fan_in)));
  }
}

// is_gain selects 1 + 0.1 c over c / sqrt_fan_in.
__global__ void generate_vector_kernel(float* out, int n, int col_offset, std::uint64_t seed,
                                       std::uint64_t tensor_id, bool is_gain, double sqrt_fan_in) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const double c = signed_unit(seed, tensor_id, 0, col_offset + i);
    // _rn intrinsics: a contracted fma would round once where the CPU model
    // rounds twice, and the weight fingerprints (H2) compare exact bits.
    out[i] = static_cast<float>(is_gain ? __dadd_rn(1.0, __dmul_rn(kGainHalfWidth, c))
                                        : __ddiv_rn(c, sqrt_fan_in));
  }
}

__global__ void set_call_params_kernel(CallParams* params, float t, float attention_bias) {
  params->t = t;
  params->attention_bias = attention_bias;
}

__global__ void add_time_embed_kernel(float* x, const float* t_embed, const CallParams* params,
                                      std::size_t count, int dim) {
  for (std::size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    x[i] += params->t * t_embed[i % dim];
  }
}

__global__ void rmsnorm_gain_kernel(const float* x, const float* gain, bf16* out, int dim) {
  const float* row = x + static_cast<std::size_t>(blockIdx.x) * dim;
  float squares = 0.0f;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) squares += row[c] * row[c];
  const float inv = rsqrtf(block_sum(squares) / dim + kNormEps);
  bf16* out_row = out + static_cast<std::size_t>(blockIdx.x) * dim;
  for (int c = threadIdx.x; c < dim; c += blockDim.x)
    out_row[c] = __float2bfloat16(row[c] * inv * gain[c]);
}

__global__ void row_sum_squares_kernel(const float* in, float* sums, int cols) {
  const float* row = in + static_cast<std::size_t>(blockIdx.x) * cols;
  float squares = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) squares += row[c] * row[c];
  const float total = block_sum(squares);
  if (threadIdx.x == 0) sums[blockIdx.x] = total;
}

__global__ void qk_normalize_kernel(const float* in, const float* sums, const float* gain,
                                    bf16* out, int cols, int full_dim) {
  const std::size_t base = static_cast<std::size_t>(blockIdx.x) * cols;
  const float inv = rsqrtf(sums[blockIdx.x] / full_dim + kNormEps);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    out[base + c] = __float2bfloat16(in[base + c] * inv * gain[c]);
  }
}

__global__ void to_bf16_kernel(const float* in, bf16* out, std::size_t count) {
  for (std::size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16(in[i]);
  }
}

__global__ void gather_frames_kernel(const bf16* ring, const int* slots, bf16* out,
                                     int tokens_per_frame, int cols, std::size_t count) {
  const std::size_t frame_elements = static_cast<std::size_t>(tokens_per_frame) * cols;
  for (std::size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t frame = i / frame_elements;
    out[i] = ring[static_cast<std::size_t>(slots[frame]) * frame_elements + i % frame_elements];
  }
}

__global__ void set_ring_slots_kernel(int* slots, int head, int frames, int window) {
  for (int i = threadIdx.x; i < frames; i += blockDim.x) slots[i] = (head + i) % window;
}

__global__ void softmax_with_bias_kernel(const float* scores, bf16* probs, int keys,
                                         int cached_keys, const CallParams* params) {
  const std::size_t base = static_cast<std::size_t>(blockIdx.x) * keys;
  const float bias = params->attention_bias;
  float best = -INFINITY;
  for (int j = threadIdx.x; j < keys; j += blockDim.x) {
    best = fmaxf(best, scores[base + j] + (j < cached_keys ? bias : 0.0f));
  }
  best = block_max(best);
  float total = 0.0f;
  for (int j = threadIdx.x; j < keys; j += blockDim.x) {
    total += __expf(scores[base + j] + (j < cached_keys ? bias : 0.0f) - best);
  }
  const float inv_total = 1.0f / block_sum(total);
  for (int j = threadIdx.x; j < keys; j += blockDim.x) {
    const float e = __expf(scores[base + j] + (j < cached_keys ? bias : 0.0f) - best);
    probs[base + j] = __float2bfloat16(e * inv_total);
  }
}

__global__ void gelu_tanh_kernel(const float* in, bf16* out, std::size_t count) {
  for (std::size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float v = in[i];
    const float inner = kSqrtTwoOverPi * (v + kGeluCoefficient * v * v * v);
    out[i] = __float2bfloat16(0.5f * v * (1.0f + tanhf(inner)));
  }
}

__global__ void add_into_kernel(float* x, const bf16* y, std::size_t count) {
  for (std::size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    x[i] += __bfloat162float(y[i]);
  }
}

}  // namespace

void generate_matrix(bf16* out, int rows, int cols, int row_offset, int col_offset,
                     std::uint64_t seed, std::uint64_t tensor_id, double fan_in,
                     cudaStream_t stream) {
  const std::size_t count = static_cast<std::size_t>(rows) * cols;
  generate_matrix_kernel<<<blocks_for(count), kThreadsPerBlock, 0, stream>>>(
      out, rows, cols, row_offset, col_offset, seed, tensor_id, std::sqrt(fan_in));
  check_launch("generate_matrix");
}

void generate_scaled_vector(float* out, int n, int col_offset, std::uint64_t seed,
                            std::uint64_t tensor_id, double fan_in, cudaStream_t stream) {
  generate_vector_kernel<<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
      out, n, col_offset, seed, tensor_id, false, std::sqrt(fan_in));
  check_launch("generate_scaled_vector");
}

void generate_gain(float* out, int n, int col_offset, std::uint64_t seed, std::uint64_t tensor_id,
                   cudaStream_t stream) {
  generate_vector_kernel<<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(out, n, col_offset, seed,
                                                                         tensor_id, true, 1.0);
  check_launch("generate_gain");
}

void set_call_params(CallParams* params, float t, float attention_bias, cudaStream_t stream) {
  set_call_params_kernel<<<1, 1, 0, stream>>>(params, t, attention_bias);
  check_launch("set_call_params");
}

void add_time_embed(float* x, const float* t_embed, const CallParams* params, int rows, int dim,
                    cudaStream_t stream) {
  const std::size_t count = static_cast<std::size_t>(rows) * dim;
  add_time_embed_kernel<<<blocks_for(count), kThreadsPerBlock, 0, stream>>>(x, t_embed, params,
                                                                            count, dim);
  check_launch("add_time_embed");
}

void rmsnorm_gain(const float* x, const float* gain, bf16* out, int rows, int dim,
                  cudaStream_t stream) {
  rmsnorm_gain_kernel<<<rows, kThreadsPerBlock, 0, stream>>>(x, gain, out, dim);
  check_launch("rmsnorm_gain");
}

void row_sum_squares(const float* in, float* sums, int rows, int cols, cudaStream_t stream) {
  row_sum_squares_kernel<<<rows, kThreadsPerBlock, 0, stream>>>(in, sums, cols);
  check_launch("row_sum_squares");
}

void qk_normalize(const float* in, const float* sums, const float* gain, bf16* out, int rows,
                  int cols, int full_dim, cudaStream_t stream) {
  qk_normalize_kernel<<<rows, kThreadsPerBlock, 0, stream>>>(in, sums, gain, out, cols, full_dim);
  check_launch("qk_normalize");
}

void to_bf16(const float* in, bf16* out, std::size_t count, cudaStream_t stream) {
  to_bf16_kernel<<<blocks_for(count), kThreadsPerBlock, 0, stream>>>(in, out, count);
  check_launch("to_bf16");
}

void gather_frames(const bf16* ring, const int* slots, bf16* out, int frames, int tokens_per_frame,
                   int cols, cudaStream_t stream) {
  const std::size_t count = static_cast<std::size_t>(frames) * tokens_per_frame * cols;
  if (count == 0) return;
  gather_frames_kernel<<<blocks_for(count), kThreadsPerBlock, 0, stream>>>(
      ring, slots, out, tokens_per_frame, cols, count);
  check_launch("gather_frames");
}

void set_ring_slots(int* slots, int head, int frames, int window, cudaStream_t stream) {
  if (frames == 0) return;
  set_ring_slots_kernel<<<1, kThreadsPerBlock, 0, stream>>>(slots, head, frames, window);
  check_launch("set_ring_slots");
}

void softmax_with_bias(const float* scores, bf16* probs, int rows, int keys, int cached_keys,
                       const CallParams* params, cudaStream_t stream) {
  softmax_with_bias_kernel<<<rows, kThreadsPerBlock, 0, stream>>>(scores, probs, keys, cached_keys,
                                                                  params);
  check_launch("softmax_with_bias");
}

void gelu_tanh(const float* in, bf16* out, std::size_t count, cudaStream_t stream) {
  gelu_tanh_kernel<<<blocks_for(count), kThreadsPerBlock, 0, stream>>>(in, out, count);
  check_launch("gelu_tanh");
}

void add_into(float* x, const bf16* y, std::size_t count, cudaStream_t stream) {
  add_into_kernel<<<blocks_for(count), kThreadsPerBlock, 0, stream>>>(x, y, count);
  check_launch("add_into");
}

// ---- a chunk's tensors outside the layers: Stage 0's inputs and decoder, digests

namespace {

__global__ void fill_uniform_kernel(float* out, std::size_t count, std::uint64_t seed, std::uint64_t stream_id,
                                    float scale) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    out[i] = static_cast<float>(signed_unit(splitmix64(seed ^ (stream_id << 32) ^ i))) * scale;
  }
}

constexpr std::uint64_t kXxPrime1 = 0x9E3779B185EBCA87ull;
constexpr std::uint64_t kXxPrime2 = 0xC2B2AE3D27D4EB4Full;
constexpr std::uint64_t kXxPrime3 = 0x165667B19E3779F9ull;
constexpr std::uint64_t kXxPrime4 = 0x85EBCA77C2B2AE63ull;
constexpr std::uint64_t kXxPrime5 = 0x27D4EB2F165667C5ull;

__device__ std::uint64_t rotl64(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
__device__ std::uint64_t xx_round(std::uint64_t acc, std::uint64_t input) {
  return rotl64(acc + input * kXxPrime2, 31) * kXxPrime1;
}
__device__ std::uint64_t xx_merge(std::uint64_t acc, std::uint64_t value) {
  return (acc ^ xx_round(0, value)) * kXxPrime1 + kXxPrime4;
}
__device__ std::uint64_t load_le64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
__device__ std::uint32_t load_le32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

// XXH64 (xxHash's specification) of `len` bytes: the host's libxxhash value.
__device__ std::uint64_t xxh64(const std::uint8_t* p, std::size_t len, std::uint64_t seed) {
  const std::uint8_t* const end = p + len;
  std::uint64_t h;
  if (len >= 32) {
    std::uint64_t v1 = seed + kXxPrime1 + kXxPrime2, v2 = seed + kXxPrime2, v3 = seed, v4 = seed - kXxPrime1;
    for (; p + 32 <= end; p += 32) {
      v1 = xx_round(v1, load_le64(p));
      v2 = xx_round(v2, load_le64(p + 8));
      v3 = xx_round(v3, load_le64(p + 16));
      v4 = xx_round(v4, load_le64(p + 24));
    }
    h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    h = xx_merge(xx_merge(xx_merge(xx_merge(h, v1), v2), v3), v4);
  } else {
    h = seed + kXxPrime5;
  }
  h += len;
  for (; p + 8 <= end; p += 8) h = rotl64(h ^ xx_round(0, load_le64(p)), 27) * kXxPrime1 + kXxPrime4;
  if (p + 4 <= end) {
    h = rotl64(h ^ (static_cast<std::uint64_t>(load_le32(p)) * kXxPrime1), 23) * kXxPrime2 + kXxPrime3;
    p += 4;
  }
  for (; p < end; ++p) h = rotl64(h ^ (*p * kXxPrime5), 11) * kXxPrime1;
  h ^= h >> 33;
  h *= kXxPrime2;
  h ^= h >> 29;
  h *= kXxPrime3;
  return h ^ (h >> 32);
}

__global__ void block_digests_kernel(const std::uint8_t* data, std::size_t bytes, std::size_t block_bytes,
                                     std::size_t blocks, std::uint64_t* out) {
  for (std::size_t b = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; b < blocks;
       b += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t offset = b * block_bytes;
    const std::size_t len = bytes - offset < block_bytes ? bytes - offset : block_bytes;
    out[b] = xxh64(data + offset, len, b);
  }
}

constexpr int kDecoderTile = 16;

// out[co, y, x] = silu?(bias[co] + Σ_ci Σ_3x3 w[co, ci, dy, dx] · in[ci, y+dy-1, x+dx-1]), zero padding.
__global__ void conv3x3_kernel(const float* in, float* out, const float* weights, const float* bias, int c_in,
                               int c_out, int h, int w, bool silu) {
  const int x = blockIdx.x * kDecoderTile + threadIdx.x;
  const int y = blockIdx.y * kDecoderTile + threadIdx.y;
  if (x >= w || y >= h) return;
  for (int co = 0; co < c_out; ++co) {
    float acc = bias[co];
    for (int ci = 0; ci < c_in; ++ci) {
      const float* plane = in + static_cast<std::size_t>(ci) * h * w;
      const float* k = weights + (static_cast<std::size_t>(co) * c_in + ci) * 9;
      for (int dy = -1; dy <= 1; ++dy) {
        const int yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (int dx = -1; dx <= 1; ++dx) {
          const int xx = x + dx;
          if (xx < 0 || xx >= w) continue;
          acc += k[(dy + 1) * 3 + dx + 1] * plane[static_cast<std::size_t>(yy) * w + xx];
        }
      }
    }
    if (silu) acc = acc / (1.0f + __expf(-acc));
    out[(static_cast<std::size_t>(co) * h + y) * w + x] = acc;
  }
}

__global__ void upsample2x_kernel(const float* in, float* out, int channels, int h, int w) {
  const std::size_t count = static_cast<std::size_t>(channels) * 4 * h * w;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t x = i % (2 * w), y = i / (2 * w) % (2 * h), c = i / (4 * static_cast<std::size_t>(h) * w);
    out[i] = in[(c * h + y / 2) * w + x / 2];
  }
}

}  // namespace

void fill_uniform(float* out, std::size_t count, std::uint64_t seed, std::uint64_t stream_id, float scale,
                  cudaStream_t stream) {
  if (count == 0) return;
  fill_uniform_kernel<<<blocks_for(count), kThreadsPerBlock, 0, stream>>>(out, count, seed, stream_id, scale);
  check_launch("fill_uniform");
}

void tensor_block_digests(const void* data, std::size_t bytes, std::size_t block_bytes, std::uint64_t* out,
                          cudaStream_t stream) {
  const std::size_t blocks = (bytes + block_bytes - 1) / block_bytes;
  if (blocks == 0) return;
  block_digests_kernel<<<blocks_for(blocks), kThreadsPerBlock, 0, stream>>>(
      static_cast<const std::uint8_t*>(data), bytes, block_bytes, blocks, out);
  check_launch("tensor_block_digests");
}

void conv3x3(const float* in, float* out, const float* weights, const float* bias, int c_in, int c_out, int h,
             int w, bool silu, cudaStream_t stream) {
  const dim3 threads(kDecoderTile, kDecoderTile);
  const dim3 grid((w + kDecoderTile - 1) / kDecoderTile, (h + kDecoderTile - 1) / kDecoderTile);
  conv3x3_kernel<<<grid, threads, 0, stream>>>(in, out, weights, bias, c_in, c_out, h, w, silu);
  check_launch("conv3x3");
}

void upsample2x(const float* in, float* out, int channels, int h, int w, cudaStream_t stream) {
  upsample2x_kernel<<<blocks_for(static_cast<std::size_t>(channels) * 4 * h * w), kThreadsPerBlock, 0, stream>>>(
      in, out, channels, h, w);
  check_launch("upsample2x");
}

}  // namespace lockstep::cuda_model
