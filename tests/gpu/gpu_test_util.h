// Helpers shared by the GPU tests: device presence, a stream gate, buffers.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <thread>

#include "lockstep/nccl_backend.h"

namespace lockstep::testing {

// Every runtime GPU test starts with this line.
#define LOCKSTEP_REQUIRE_CUDA_DEVICE()                                          \
  do {                                                                          \
    if (::lockstep::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

// Holds a stream at a host function until open() (or its own bound expires),
// so work queued behind it stays in flight for as long as a test needs.
class StreamGate {
 public:
  static constexpr std::chrono::seconds kHoldMax{60};

  StreamGate() = default;
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;
  // The host function reads this object: wait (bounded) until it has let go.
  ~StreamGate() {
    open();
    const auto deadline = std::chrono::steady_clock::now() + kHoldMax;
    while (launched_ && !released_.load() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  void close_on(cudaStream_t stream) {
    launched_ = cudaLaunchHostFunc(stream, &StreamGate::hold, this) == cudaSuccess;
  }
  void open() { open_.store(true); }

 private:
  static void CUDART_CB hold(void* self) {
    auto* gate = static_cast<StreamGate*>(self);
    const auto deadline = std::chrono::steady_clock::now() + kHoldMax;
    while (!gate->open_.load() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    gate->released_.store(true);
  }
  std::atomic<bool> open_{false};
  std::atomic<bool> released_{false};
  bool launched_ = false;
};

// cudaMalloc'd bytes freed on scope exit.
class DeviceBytes {
 public:
  explicit DeviceBytes(std::size_t size_bytes) { cudaMalloc(&data_, size_bytes); }
  ~DeviceBytes() { cudaFree(data_); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  void* get() const { return data_; }

 private:
  void* data_ = nullptr;
};

}  // namespace lockstep::testing
