// Per-group backend choice, as PyTorch pairs a CPU (Gloo) and a GPU (NCCL)
// process group: NCCL needs every member of a communicator on its own GPU, so a
// group that contains a CPU-only rank, or two ranks sharing one GPU, runs over
// Gloo while the groups that satisfy NCCL run over NCCL. Plain C++ (no CUDA):
// built whether or not the NCCL backend is.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/backend.h"

namespace lockstep {

// The GPU a rank drives. host tells apart equal GPU indices on different
// machines; gpu_index < 0 means the rank drives no GPU.
struct RankDevice {
  int host_index = 0;
  int gpu_index = -1;
};

// Which backend a group runs on and why (the reason goes into logs and the
// start-up parity record, so it must be identical on every rank).
struct GroupBackendChoice {
  std::string backend;  // "nccl" or "gloo"
  std::string reason;
};

// Devices of ranks 0 .. world_size-1 on one host: rank 0 drives none when
// stage0_cpu_only (pp* topologies decode on the CPU), the others take GPUs
// round robin from 0 (the LOCAL_RANK % device count rule of torchrun jobs).
// Pure; throws Error{kInvalidArgument} when world_size < 1 or device_count < 0.
std::vector<RankDevice> assign_devices_one_host(int world_size, bool stage0_cpu_only,
                                                int device_count);

// Chooses "nccl" when NCCL is usable and every member drives its own GPU,
// "gloo" otherwise. member_ranks are global ranks indexing device_of_rank.
// Pure, deterministic (equal inputs give equal outputs on every rank).
// Throws Error{kInvalidArgument} naming the group when a member has no entry
// in device_of_rank or the group is empty.
GroupBackendChoice choose_group_backend(const std::string& group_name,
                                        const std::vector<int>& member_ranks,
                                        const std::vector<RankDevice>& device_of_rank,
                                        bool nccl_available);

// A BackendFactory that connects each group through the factory of the
// backend chosen for it, so one Communicator holds Gloo and NCCL groups side
// by side. Holds borrowed factories: they must outlive the router.
class GroupBackendRouter final : public BackendFactory {
 public:
  // factories: backend name → factory; backend_of_group: group name →
  // backend name. Throws Error{kInvalidArgument} naming the group when it
  // names a backend without a (non-null) factory.
  GroupBackendRouter(std::map<std::string, BackendFactory*> factories,
                     std::map<std::string, std::string> backend_of_group);

  // Connects through the group's factory; throws Error{kInvalidArgument}
  // naming the group when no backend was chosen for it, else what that
  // factory throws.
  std::unique_ptr<Backend> connect(Store& store, const BackendGroupSpec& spec) override;

 private:
  std::map<std::string, BackendFactory*> factory_of_group_;
};

}  // namespace lockstep
