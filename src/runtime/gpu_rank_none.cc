// gpu_rank.h for a build without CUDA: no GPUs, and a clear refusal.
#include "gpu_rank.h"
#include "lockstep/error.h"
#include "lockstep/run_config.h"

namespace lockstep {

MachineGpus probe_machine_gpus() { return MachineGpus{false, 0}; }

std::unique_ptr<GpuRank> open_gpu_rank(int device_index, std::chrono::milliseconds /*timeout*/) {
  throw Error(ErrorCode::kInvalidArgument,
              "GPU " + std::to_string(device_index) +
                  ": this lockstep was built without CUDA (nvcc was not found when it was configured)");
}

}  // namespace lockstep
