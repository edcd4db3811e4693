#include "lockstep/backend_selection.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "lockstep/error.h"

namespace lockstep {

std::vector<RankDevice> assign_devices_one_host(int world_size, bool stage0_cpu_only,
                                                int device_count) {
  if (world_size < 1 || device_count < 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "assign_devices_one_host: world_size " + std::to_string(world_size) +
                    " must be >= 1 and device_count " + std::to_string(device_count) + " >= 0");
  }
  std::vector<RankDevice> devices(static_cast<std::size_t>(world_size));
  const int first_gpu_rank = stage0_cpu_only ? 1 : 0;
  for (int rank = first_gpu_rank; rank < world_size && device_count > 0; ++rank) {
    devices[static_cast<std::size_t>(rank)].gpu_index = (rank - first_gpu_rank) % device_count;
  }
  return devices;
}

GroupBackendChoice choose_group_backend(const std::string& group_name,
                                        const std::vector<int>& member_ranks,
                                        const std::vector<RankDevice>& device_of_rank,
                                        bool nccl_available) {
  const std::string where = "group '" + group_name + "'";
  if (member_ranks.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "choose_group_backend: " + where + " has no members");
  }
  if (!nccl_available) return {"gloo", where + ": NCCL backend not built or no CUDA device"};
  std::map<std::pair<int, int>, int> owner_of_gpu;
  for (int rank : member_ranks) {
    if (rank < 0 || rank >= static_cast<int>(device_of_rank.size())) {
      throw Error(ErrorCode::kInvalidArgument, "choose_group_backend: " + where + " member rank " +
                                                   std::to_string(rank) + " has no device entry");
    }
    const RankDevice& device = device_of_rank[static_cast<std::size_t>(rank)];
    if (device.gpu_index < 0) {
      return {"gloo", where + ": rank " + std::to_string(rank) + " drives no GPU"};
    }
    const auto [it, inserted] =
        owner_of_gpu.emplace(std::make_pair(device.host_index, device.gpu_index), rank);
    if (!inserted) {
      return {"gloo", where + ": ranks " + std::to_string(it->second) + " and " +
                          std::to_string(rank) + " share GPU " + std::to_string(device.gpu_index) +
                          " on host " + std::to_string(device.host_index) +
                          " (NCCL refuses two ranks of one communicator on one GPU)"};
    }
  }
  return {"nccl", where + ": each of the " + std::to_string(member_ranks.size()) +
                      " members drives its own GPU"};
}

GroupBackendRouter::GroupBackendRouter(std::map<std::string, BackendFactory*> factories,
                                       std::map<std::string, std::string> backend_of_group) {
  for (const auto& [group, backend] : backend_of_group) {
    const auto found = factories.find(backend);
    if (found == factories.end() || found->second == nullptr) {
      throw Error(ErrorCode::kInvalidArgument, "group '" + group + "' is to run on backend '" + backend +
                                                   "', which this process has no factory for");
    }
    factory_of_group_.emplace(group, found->second);
  }
}

std::unique_ptr<Backend> GroupBackendRouter::connect(Store& store, const BackendGroupSpec& spec) {
  const auto found = factory_of_group_.find(spec.group_name);
  if (found == factory_of_group_.end()) {
    throw Error(ErrorCode::kInvalidArgument,
                "group '" + spec.group_name + "' has no backend chosen for it (choose_group_backend)");
  }
  return found->second->connect(store, spec);
}

}  // namespace lockstep
