// Tensor-parallel sums between CudaModels driven by threads of one process,
// all on one GPU (NCCL refuses two ranks on one device): each rank waits for
// its stream, the ranks meet at a bounded barrier, the last to arrive sums the
// buffers on the host (fp32 arithmetic, bf16 rounded to nearest even, as NCCL
// does for two ranks) and writes the sum back to every rank. Slow and simple:
// it exists to check that TP shards recombine to the single-rank model.
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lockstep/assert.h"
#include "lockstep/cuda_model.h"
#include "lockstep/error.h"

namespace lockstep::testing {

class InProcessMesh {
 public:
  static constexpr std::chrono::seconds kMeetTimeout{30};

  explicit InProcessMesh(int size) : size_(size), buffers_(size, nullptr) {}

  // Blocks until every rank contributed `data`, then until the sum is written.
  void all_reduce(int rank, void* data, std::size_t count, DType dtype) {
    std::unique_lock<std::mutex> lock(mu_);
    const std::uint64_t round = round_;
    buffers_[rank] = data;
    if (++arrived_ == size_) {
      sum_into_all(count, dtype);
      arrived_ = 0;
      ++round_;
      met_.notify_all();
      return;
    }
    if (!met_.wait_for(lock, kMeetTimeout, [&] { return round_ != round; })) {
      throw Error(ErrorCode::kTimeout, "in-process mesh: rank " + std::to_string(rank) +
                                           " waited alone for an all-reduce");
    }
  }

 private:
  static float to_float(DType dtype, const std::uint8_t* element) {
    if (dtype == DType::kF32) {
      float value = 0;
      std::memcpy(&value, element, sizeof(value));
      return value;
    }
    std::uint16_t half = 0;
    std::memcpy(&half, element, sizeof(half));
    const std::uint32_t bits = static_cast<std::uint32_t>(half) << 16;
    float value = 0;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }

  static void from_float(DType dtype, float value, std::uint8_t* element) {
    if (dtype == DType::kF32) {
      std::memcpy(element, &value, sizeof(value));
      return;
    }
    std::uint32_t bits = 0;
    std::memcpy(&bits, &value, sizeof(bits));
    bits += 0x7FFFu + ((bits >> 16) & 1u);  // round to nearest even
    const auto half = static_cast<std::uint16_t>(bits >> 16);
    std::memcpy(element, &half, sizeof(half));
  }

  void sum_into_all(std::size_t count, DType dtype) {
    LOCKSTEP_ASSERT(dtype == DType::kF32 || dtype == DType::kBF16);
    const std::size_t element_bytes = dtype_size_bytes(dtype);
    std::vector<float> sum(count, 0.0f);
    std::vector<std::uint8_t> bytes(count * element_bytes);
    for (void* buffer : buffers_) {
      cudaMemcpy(bytes.data(), buffer, bytes.size(), cudaMemcpyDeviceToHost);
      for (std::size_t i = 0; i < count; ++i) sum[i] += to_float(dtype, &bytes[i * element_bytes]);
    }
    for (std::size_t i = 0; i < count; ++i) from_float(dtype, sum[i], &bytes[i * element_bytes]);
    for (void* buffer : buffers_) {
      cudaMemcpy(buffer, bytes.data(), bytes.size(), cudaMemcpyHostToDevice);
    }
    // A pageable upload may return before its DMA lands, and the ranks'
    // streams do not order after the legacy stream.
    cudaDeviceSynchronize();
  }

  const int size_;
  std::mutex mu_;
  std::condition_variable met_;
  std::vector<void*> buffers_;
  int arrived_ = 0;
  std::uint64_t round_ = 0;
};

// One rank's view of an InProcessMesh.
class InProcessTpOps final : public CudaTensorParallelOps {
 public:
  InProcessTpOps(InProcessMesh& mesh, int rank, int size) : mesh_(mesh), rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(void* device_data, std::size_t count, DType dtype,
                      void* cuda_stream) override {
    // The partial sums must be complete before another thread reads them; a
    // test may block here (the production path polls events instead).
    cudaStreamSynchronize(static_cast<cudaStream_t>(cuda_stream));
    mesh_.all_reduce(rank_, device_data, count, dtype);
  }
  bool stream_ordered() const override { return false; }

 private:
  InProcessMesh& mesh_;
  const int rank_;
  const int size_;
};

}  // namespace lockstep::testing
