// A CompletionProbe over a CUDA event that another library recorded (torch's
// torch.cuda.Event, after a collective on its stream). The event is queried
// through the CUDA driver (cuEventQuery, found with dlopen), so the Python
// extension needs no CUDA at build time and works with whichever CUDA
// runtime torch brought. A runtime cudaEvent_t is the driver's CUevent.
#pragma once

#include <cstdint>
#include <string>

#include "lockstep/completion_tracker.h"

namespace lockstep::python {

class CudaEventProbe final : public CompletionProbe {
 public:
  // `event` is the cudaEvent_t as an integer; the caller keeps the event
  // alive until the probe reports done (the Python side holds a reference).
  // Throws Error{kResource} when libcuda.so.1 or cuEventQuery is missing.
  explicit CudaEventProbe(std::uintptr_t event);
  State poll(std::string& error) override;

  using Query = int (*)(void*);

 private:
  Query query_;
  void* event_;
};

}  // namespace lockstep::python
