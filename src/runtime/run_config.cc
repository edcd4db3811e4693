#include "lockstep/run_config.h"

#include "lockstep/error.h"
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
  // Refused rather than silently run on Gloo: the NCCL backend and the CUDA
  // model exist and are tested (ctest -L gpu), but the reference job does
  // not yet drive a CudaModel on an NCCL mesh group.
  require(backend == "gloo",
          "--backend nccl: the reference job cannot run its mesh on NCCL yet (the NCCL backend and CUDA model "
          "are exercised by `ctest -L gpu` and lockstep_gpu_probe); use --backend gloo");
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
}

}  // namespace lockstep
