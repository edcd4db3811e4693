#include "cuda_event_probe.h"

#include <dlfcn.h>

#include "lockstep/error.h"

namespace lockstep::python {
namespace {

constexpr int kCudaSuccess = 0;
constexpr int kCudaErrorNotReady = 600;

// cuEventQuery of the process's CUDA driver, looked up once (a probe is made
// per tracked call, on the caller's path).
CudaEventProbe::Query driver_event_query() {
  static const CudaEventProbe::Query query = [] {
    void* driver = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (driver == nullptr) driver = ::dlopen("libcuda.so.1", RTLD_NOW);
    return driver != nullptr ? reinterpret_cast<CudaEventProbe::Query>(::dlsym(driver, "cuEventQuery")) : nullptr;
  }();
  if (query == nullptr) throw Error(ErrorCode::kResource, "CUDA event probe: libcuda.so.1 or its cuEventQuery is missing");
  return query;
}

}  // namespace

CudaEventProbe::CudaEventProbe(std::uintptr_t event)
    : query_(driver_event_query()), event_(reinterpret_cast<void*>(event)) {
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
