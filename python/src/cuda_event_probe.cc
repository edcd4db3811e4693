#include "cuda_event_probe.h"

#include <dlfcn.h>

#include "lockstep/error.h"

namespace lockstep::python {
namespace {

constexpr int kCudaSuccess = 0;
constexpr int kCudaErrorNotReady = 600;

void* cuda_driver() {
  void* driver = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (driver == nullptr) driver = ::dlopen("libcuda.so.1", RTLD_NOW);
  if (driver == nullptr) throw Error(ErrorCode::kResource, "CUDA event probe: libcuda.so.1 is not loadable");
  return driver;
}

}  // namespace

CudaEventProbe::CudaEventProbe(std::uintptr_t event)
    : query_(reinterpret_cast<Query>(::dlsym(cuda_driver(), "cuEventQuery"))),
      event_(reinterpret_cast<void*>(event)) {
  if (query_ == nullptr) throw Error(ErrorCode::kResource, "CUDA event probe: cuEventQuery not found in libcuda");
  if (event_ == nullptr) throw Error(ErrorCode::kInvalidArgument, "CUDA event probe: null event");
}

CompletionProbe::State CudaEventProbe::poll(std::string& error) {
  const int status = query_(event_);
  if (status == kCudaSuccess) return State::kDone;
  if (status == kCudaErrorNotReady) return State::kPending;
  error = "cuEventQuery returned CUDA error " + std::to_string(status);
  return State::kFailed;
}

}  // namespace lockstep::python
