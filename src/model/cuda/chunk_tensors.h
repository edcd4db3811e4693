// A chunk's tensors on one GPU, outside the layers (issue 16: Stage 0 on its
// own GPU, payloads device to device): device payload memory, Stage 0's
// inputs and its decoder, and digests computed where the tensor is, so a
// chunk's tensors never cross to the host to be made, checked or decoded.
//
// Every call runs on the calling thread's own stream (cudaStreamPerThread),
// so the producer, comm and decode threads of Stage 0 never wait on each
// other's GPU work, and returns once that work is done, waiting by polling
// an event under `timeout` (never a blocking synchronize): Error{kTimeout}
// then, Error{kBackend} on a CUDA failure. Thread-safe, except decode()
// (one thread: Stage 0's decode thread).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "lockstep/tensor_manifest.h"

namespace lockstep {

class CudaChunkTensors {
 public:
  CudaChunkTensors(int device_index, std::chrono::milliseconds timeout);
  ~CudaChunkTensors();
  CudaChunkTensors(const CudaChunkTensors&) = delete;
  CudaChunkTensors& operator=(const CudaChunkTensors&) = delete;

  // Device memory for payloads. A chunk's buffers have the same sizes every
  // chunk, and cudaFree would synchronize the whole device under the mesh's
  // kernels: released blocks are kept for reuse, at most
  // kPooledBlocksMax of them.
  PayloadMemory& memory();
  static constexpr std::size_t kPooledBlocksMax = 16;

  // Stage 0's inputs (cuda_model::fill_uniform, scale 1): the CPU Stage 0's
  // values bit for bit.
  void fill_inputs(std::span<float> device_values, std::uint64_t seed, std::uint64_t stream_id);
  // device_values[index] += delta (fault H1).
  void add(std::span<float> device_values, std::size_t index, float delta);
  // digest_tensor (lockstep/digest.h) of device memory: block digests on the
  // GPU, only they (1/512 of the tensor) copied back and folded.
  std::uint64_t digest(const void* device_data, std::size_t bytes);

  // Stage 0's decode of one output chunk [rows × dim] shaped like a VAE
  // decoder: the chunk read as a 16-channel image [16, rows, dim/16],
  // `layers` 3×3 convolutions with SiLU, a ×2 nearest upsample and a 3×3
  // convolution to 3 channels. The number of layers is chosen once per
  // shape so the decode takes about `cost_ms` on this GPU (measured, not
  // assumed); cost_ms <= 0 decodes nothing. Returns the layers run.
  int decode(std::span<const float> device_output, std::int64_t rows, int dim, double cost_ms);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep
