// Owning handles for device memory and pinned host memory. Private.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "backends/nccl/cuda_check.h"

namespace lockstep::cuda_model {

// `count` elements of T in device memory (cudaMalloc), freed on destruction.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t count) : count_(count) {
    cuda_detail::check_cuda(cudaMalloc(&data_, count * sizeof(T) + (count == 0 ? 1 : 0)),
                            "cudaMalloc");
  }
  ~DeviceArray() {
    if (data_ != nullptr) cudaFree(data_);
  }
  DeviceArray(DeviceArray&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  DeviceArray& operator=(DeviceArray&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return data_; }
  std::size_t count() const { return count_; }

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
};

// Page-locked host memory: copies from it are truly asynchronous, where a
// pageable copy would wait for the stream (a blocking wait we never make).
template <typename T>
class PinnedArray {
 public:
  explicit PinnedArray(std::size_t count) : count_(count) {
    cuda_detail::check_cuda(cudaMallocHost(&data_, count * sizeof(T) + (count == 0 ? 1 : 0)),
                            "cudaMallocHost");
  }
  ~PinnedArray() { cudaFreeHost(data_); }
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;

  T* get() const { return data_; }
  std::size_t count() const { return count_; }

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
};

// A non-blocking stream, an event without timing and a cuBLAS handle bound to
// a stream, each released on destruction (also when a constructor throws).
class CudaStream {
 public:
  CudaStream() {
    cuda_detail::check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                            "create stream");
  }
  ~CudaStream() { cudaStreamDestroy(stream_); }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class CudaEvent {
 public:
  // Timing costs an event's overhead on every record: only where it is read.
  explicit CudaEvent(bool timing = false) {
    cuda_detail::check_cuda(cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming),
                            "create event");
  }
  ~CudaEvent() { cudaEventDestroy(event_); }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

class CublasHandle {
 public:
  explicit CublasHandle(cudaStream_t stream) {
    cuda_detail::check_cublas(cublasCreate(&handle_), "cublasCreate");
    if (cublasSetStream(handle_, stream) != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(handle_);
      cuda_detail::check_cublas(CUBLAS_STATUS_INTERNAL_ERROR, "cublasSetStream");
    }
  }
  ~CublasHandle() { cublasDestroy(handle_); }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

}  // namespace lockstep::cuda_model
