#include "model/cuda/event_wait.h"

#include <string>
#include <thread>

#include "backends/nccl/cuda_check.h"
#include "lockstep/error.h"
#include "lockstep/nccl_backend.h"

namespace lockstep::cuda_model {

void wait_event(cudaEvent_t event, std::chrono::milliseconds timeout, const char* who, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const cudaError_t status = cudaEventQuery(event);
    if (status == cudaSuccess) return;
    if (status != cudaErrorNotReady) cuda_detail::check_cuda(status, what);
    if (std::chrono::steady_clock::now() >= deadline) {
      throw Error(ErrorCode::kTimeout, std::string(who) + ": " + what + " not done within " +
                                           std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(kNcclPollInterval);
  }
}

}  // namespace lockstep::cuda_model
