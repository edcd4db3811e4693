#include "lockstep/run_config.h"

#include <algorithm>
#include <cmath>

#include "lockstep/error.h"
#include "lockstep/fatal.h"
#include "lockstep/model_config.h"

namespace lockstep {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw Error(ErrorCode::kInvalidArgument, message);
}

}  // namespace

Topology parse_topology(std::string_view name) {
  if (const auto topology = topology_from_name(name)) return *topology;
  throw Error(ErrorCode::kInvalidArgument,
              "--topology '" + std::string(name) + "' is unknown; valid: tp, pp0, pp1");
}

int RunConfig::mesh_size() const { return topology == Topology::kTp ? nproc : nproc - 1; }
int RunConfig::first_mesh_rank() const { return topology == Topology::kTp ? 0 : 1; }

double RunConfig::slowest_decode_ms() const {
  const bool slowed = std::any_of(injections.begin(), injections.end(),
                                  [](const Injection& injection) { return injection.id == FaultId::kE1; });
  // A slowed decode costs at least the factor in ms even when none was configured.
  return slowed ? std::max(decode_ms, 1.0) * kE1DecodeFactor : decode_ms;
}

std::chrono::milliseconds RunConfig::end_bound() const {
  const double stage0_after_mesh_ms = (depth_out + 1) * slowest_decode_ms() + drain_deadline_ms;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(stage0_after_mesh_ms)) + deadline_ms) +
         kHardExitDeadlineDefault;
}

void RunConfig::validate() const {
  require(nproc >= 1 && nproc <= kRunWorldSizeMax,
          "--nproc " + std::to_string(nproc) + " is outside 1.." + std::to_string(kRunWorldSizeMax));
  if (topology == Topology::kPp0) {
    require(nproc == 2, "--topology pp0 needs --nproc 2 (rank 0 + one mesh rank), got " +
                            std::to_string(nproc));
  }
  if (topology == Topology::kPp1) {
    require(nproc >= 3, "--topology pp1 needs --nproc >= 3 (rank 0 + a mesh of >= 2), got " +
                            std::to_string(nproc));
  }
  require(chunks >= 1 && chunks <= kChunksMax, "--chunks must be in 1.." + std::to_string(kChunksMax));
  require(hard_cut_every >= 0, "--hard-cut-every must be >= 0");
  require(recompute_every >= 0, "--recompute-every must be >= 0");
  require(num_denoise_steps >= 1 && num_denoise_steps <= 64, "--steps must be in 1..64");
  require(depth_in >= 1 && depth_in <= static_cast<int>(kQueueCapacityMax),
          "--depth must be in 1.." + std::to_string(static_cast<int>(kQueueCapacityMax)));
  require(depth_out >= 1 && depth_out <= static_cast<int>(kQueueCapacityMax),
          "--depth-out must be in 1.." + std::to_string(static_cast<int>(kQueueCapacityMax)));
  require(backend == "gloo" || backend == "nccl", "--backend '" + backend + "': valid: gloo, nccl");
  require(!graph_capture || backend == "nccl",
          "--graph-capture needs --backend nccl: it captures the CUDA model's denoise call");
  require(decode_ms >= 0 && decode_ms <= 60'000, "--decode-ms must be in 0..60000");
  require(generate_ms >= 0 && generate_ms <= 60'000, "--generate-ms must be in 0..60000");
  require(deadline_ms >= 10 && deadline_ms <= 600'000, "--deadline-ms must be in 10..600000");
  require(startup_deadline_ms >= 100 && startup_deadline_ms <= 600'000,
          "--startup-deadline-ms must be in 100..600000");
  require(heartbeat_ms >= 1 && heartbeat_ms < deadline_ms,
          "--heartbeat-ms must be >= 1 and below --deadline-ms");
  require(drain_deadline_ms >= 10 && drain_deadline_ms <= 600'000,
          "--drain-deadline-ms must be in 10..600000");
  const ModelConfig model_config = model_config_from_name(model);
  require(model_config.heads % mesh_size() == 0,
          "model '" + model + "' has " + std::to_string(model_config.heads) + " heads, which a mesh of " +
              std::to_string(mesh_size()) + " ranks cannot split evenly (tensor parallelism shards heads)");
  require(injections.size() <= kInjectionsMax,
          "at most " + std::to_string(kInjectionsMax) + " --inject values");
  // A fault that cannot fire would pass silently and prove nothing.
  for (const Injection& injection : injections) {
    const bool needs_boundary = injection.id == FaultId::kB1 || injection.id == FaultId::kC2;
    require(!needs_boundary || topology != Topology::kTp,
            "--inject " + std::string(fault_id_name(injection.id)) +
                " needs a pipeline boundary (--topology pp0 or pp1): under tp rank 0 is in the mesh and no "
                "payload crosses a boundary, so the fault could never fire");
  }
}

GroupBackendPlan plan_group_backends(const RunConfig& config, const MachineGpus& machine) {
  config.validate();
  const GroupTable table = make_standard_group_table(config.topology, config.nproc);
  GroupBackendPlan plan;
  const bool nccl = config.backend == "nccl";
  require(!nccl || machine.cuda_built,
          "--backend nccl: this lockstep was built without CUDA (nvcc was not found when it was configured); "
          "rebuild where nvcc is installed, or use --backend gloo");
  const bool pipeline = config.topology != Topology::kTp;
  plan.stage0_on_gpu = nccl && pipeline && machine.visible >= config.nproc;
  plan.device_of_rank = assign_devices_one_host(config.nproc, pipeline && !plan.stage0_on_gpu,
                                                nccl ? machine.visible : 0);
  for (const GroupSpec& group : table.groups()) {
    if (group.name == kGroupBoundary) {
      plan.backend_of_group[group.name] = plan.stage0_on_gpu ? "nccl" : "gloo";
      continue;
    }
    if (group.name != kGroupMesh || !nccl) {
      plan.backend_of_group[group.name] = "gloo";
      continue;
    }
    const GroupBackendChoice choice = choose_group_backend(group.name, group.member_ranks, plan.device_of_rank,
                                                           /*nccl_available=*/machine.visible > 0);
    const int gpus_needed = config.mesh_size();
    require(choice.backend == "nccl",
            "--backend nccl: topology " + std::string(topology_name(config.topology)) + " with --nproc " +
                std::to_string(config.nproc) + " has " + std::to_string(gpus_needed) +
                " mesh ranks and NCCL needs a GPU for each, " + std::to_string(gpus_needed) +
                " in all; this machine shows " + std::to_string(machine.visible) + " (" + choice.reason +
                "). On one GPU run --topology pp0 --nproc 2 or --topology tp --nproc 1; or use --backend gloo");
    plan.backend_of_group[group.name] = "nccl";
    plan.mesh_reason = choice.reason;
  }
  return plan;
}

GroupBackendPlan plan_group_backends_here(const RunConfig& config) {
  return plan_group_backends(config, config.backend == "nccl" ? probe_machine_gpus() : MachineGpus{});
}

}  // namespace lockstep
