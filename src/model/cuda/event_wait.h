// Waiting for GPU work without a blocking synchronize, for the model and the
// chunk tensors alike: poll an event every kNcclPollInterval under a deadline,
// so a hung kernel or collective is reported (Error{kTimeout} naming `who` and
// `what`), never waited behind. Private.
#pragma once

#include <cuda_runtime.h>

#include <chrono>

namespace lockstep::cuda_model {

// Returns once `event` has completed; Error{kTimeout} "<who>: <what> not done
// within N ms" at the deadline, Error{kBackend} on a CUDA failure.
void wait_event(cudaEvent_t event, std::chrono::milliseconds timeout, const char* who, const char* what);

}  // namespace lockstep::cuda_model
