#include "rank_main.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "control_channels.h"
#include "gpu_rank.h"
#include "lockstep/assert.h"
#include "lockstep/backend_selection.h"
#include "lockstep/completion_tracker.h"
#include "lockstep/digest.h"
#include "lockstep/error.h"
#include "lockstep/gloo_backend.h"
#include "lockstep/guard_observer.h"
#include "lockstep/job_token.h"
#include "lockstep/model_config.h"
#include "lockstep/parity.h"
#include "lockstep/recovery.h"
#include "lockstep/rank_env.h"
#include "lockstep/tripwire.h"
#include "mesh_loop.h"
#include "mesh_member.h"
#include "rank_context.h"
#include "stage0.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;

std::string role_of(const RunConfig& config, int rank) {
  if (rank == 0) return "stage0";
  return rank == config.first_mesh_rank() ? "leader" : "worker";
}

// B3 turns the group order around on one rank; the table digest in the
// parity record stops the job before any group connects.
GroupTable group_table_for(const RunConfig& config, int rank, const FaultPlan& faults) {
  GroupTable standard = make_standard_group_table(config.topology, config.nproc);
  if (!faults.active(FaultId::kB3, rank, config.nproc - 1)) return standard;
  GroupTable reversed(config.nproc);
  const auto& groups = standard.groups();
  for (auto it = groups.rbegin(); it != groups.rend(); ++it) reversed.add(it->name, it->member_ranks);
  return reversed;
}

std::string plan_schedule_id(const RunConfig& config) {
  return "steps=" + std::to_string(config.num_denoise_steps) + ",recompute_every=" +
         std::to_string(config.recompute_every) + ",hard_cut_every=" + std::to_string(config.hard_cut_every) +
         ",chunks=" + std::to_string(config.chunks);
}

ParityInputs parity_inputs(const RunConfig& config, int rank, const FaultPlan& faults, const GroupTable& table,
                           const GroupBackendPlan& backends) {
  const int last = config.nproc - 1;
  ParityInputs inputs;
  if (faults.active(FaultId::kA4, rank, last)) inputs.protocol = VersionRange{kProtocolVersionMax + 1, kProtocolVersionMax + 1};
  inputs.topology = std::string(topology_name(config.topology));
  inputs.world_size = config.nproc;
  inputs.plan_id = plan_schedule_id(config);
  inputs.group_table_digest = table.digest();
  inputs.model_config_digest = model_config_digest(model_config_from_name(config.model));
  const std::string& mesh_backend = backends.backend_of_group.at(std::string(kGroupMesh));
  const bool gpu_mesh = mesh_backend == "nccl";
  inputs.dtype = gpu_mesh ? "bf16" : "f32";
  inputs.graph_capture = config.graph_capture != faults.active(FaultId::kG1, rank, last);
  const auto boundary = backends.backend_of_group.find(std::string(kGroupBoundary));
  inputs.resolved = {{"backend.world", backends.backend_of_group.at(std::string(kGroupWorld))},
                     {"backend.boundary", boundary != backends.backend_of_group.end() ? boundary->second : "none"},
                     {"backend.mesh", mesh_backend},
                     // Tensor digests are compared across ranks and against
                     // Stage 0: every rank must compute the same function.
                     {"digest.tensor", "xxh64_blocks_" + std::to_string(kTensorDigestBlockBytes)},
                     {"kernel.matmul", gpu_mesh ? "cublas_bf16" : "openblas_sgemm"}};
  inputs.gating_flags = {{"extra_norm_all_reduce", faults.active(FaultId::kB4, rank, last) ? "on" : "off"},
                         {"depth_in", std::to_string(config.depth_in)},
                         {"heartbeat_ms", std::to_string(config.heartbeat_ms)}};
  inputs.parity_env = {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "LOCKSTEP_GLOO_IFACE", "CUDA_VISIBLE_DEVICES"};
  return inputs;
}

void write_json_file(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  const std::filesystem::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary);
    out << text;
    if (!out) throw Error(ErrorCode::kResource, "cannot write " + temporary.string());
  }
  std::filesystem::rename(temporary, path);
}

void write_rank_counters(const RankContext& context, const MeshLoop* loop) {
  nlohmann::json counters = {{"rank", context.rank}, {"role", role_of(context.config, context.rank)}};
  if (loop != nullptr) {
    counters["duplicate_drops"] = loop->duplicate_drops();
    counters["chunks_run"] = loop->chunks_run();
  }
  write_json_file(std::filesystem::path(context.job_dir) / "ranks" / ("rank-" + std::to_string(context.rank) + ".json"),
                  counters.dump());
}

// The backends of the groups `rank` belongs to: a rank connects only those,
// so a CPU-only rank never needs an NCCL factory.
std::map<std::string, std::string> member_backends(const GroupBackendPlan& plan, const GroupTable& table, int rank) {
  std::map<std::string, std::string> backends;
  for (const GroupSpec& group : table.groups()) {
    if (std::find(group.member_ranks.begin(), group.member_ranks.end(), rank) == group.member_ranks.end()) continue;
    backends.emplace(group.name, plan.backend_of_group.at(group.name));
  }
  return backends;
}

// The GPU this rank drives for an NCCL group (`backends`: member_backends);
// null when it drives none.
std::unique_ptr<GpuRank> open_rank_gpu(const std::map<std::string, std::string>& backends,
                                       const GroupBackendPlan& plan, int rank, milliseconds timeout) {
  const bool on_nccl = std::any_of(backends.begin(), backends.end(),
                                   [](const auto& group_backend) { return group_backend.second == "nccl"; });
  if (!on_nccl) return nullptr;
  const int gpu_index = plan.device_of_rank.at(static_cast<std::size_t>(rank)).gpu_index;
  LOCKSTEP_ASSERT(gpu_index >= 0);
  return open_gpu_rank(gpu_index, timeout);
}

// The role's loop, once everything is connected and checked. `generator` is
// the rank's model, kept across generations (mesh_member.h).
void run_role(RankContext& context, std::unique_ptr<MeshGenerator>& generator) {
  ControlChannels channels = open_control_channels(context);
  context.comm.set_phase(Phase::kStartup);
  std::optional<MeshMember> member;
  if (context.in_mesh()) member.emplace(context, generator);  // weight fingerprints (H2)
  // Steady-state deadlines start once every rank is ready: a mesh still
  // loading a large model must not spend Stage 0's first-result deadline.
  context.comm.barrier(kGroupWorld, milliseconds(context.config.startup_deadline_ms));
  context.comm.set_phase(Phase::kControl);
  context.recorder.set_phase("control");
  context.watchdog.enter_steady_state();
  if (context.is_stage0()) {
    Stage0 stage0(context, channels, member ? &*member : nullptr);
    const RunSummary summary = stage0.run();
    if (context.fatal.tripped()) return;  // another thread ended the generation
    write_json_file(std::filesystem::path(context.job_dir) / "summary.json", run_summary_json(summary, context.config));
    write_rank_counters(context, nullptr);
    return;
  }
  MeshLoop loop(context, channels, *member);
  loop.run();
  write_rank_counters(context, &loop);
}

// C5: the backend abort itself hangs; only the hard-exit deadline ends the rank.
void hang_forever() {
  std::promise<void> never;
  never.get_future().wait();
}

// What a rank keeps from one generation to the next under warm recovery:
// its GPU (device context, streams) and its model with the weights loaded.
struct KeptAcrossGenerations {
  std::unique_ptr<GpuRank> gpu;
  std::unique_ptr<MeshGenerator> generator;
};

// Releases, when the generation ends, a generator that holds the
// generation's communicator calls (mesh_generator.h). Declared after the
// communicator, so it runs before the communicator is torn down. After a
// curable fault the fatal path has already aborted the communicators: the
// graphs go after the abort then, under the hard-exit bound that is still
// armed (not yet run on GPUs: recovery with graph capture is untested).
class ReleaseBoundGenerator {
 public:
  explicit ReleaseBoundGenerator(std::unique_ptr<MeshGenerator>& generator) : generator_(generator) {}
  ~ReleaseBoundGenerator() {
    if (generator_ != nullptr && !generator_->outlives_generation()) generator_.reset();
  }
  ReleaseBoundGenerator(const ReleaseBoundGenerator&) = delete;
  ReleaseBoundGenerator& operator=(const ReleaseBoundGenerator&) = delete;

 private:
  std::unique_ptr<MeshGenerator>& generator_;
};

enum class GenerationEnd : std::uint8_t { kStreamDone, kFaultCured };

// One generation of this rank: rendezvous under `generation`, connect, check,
// stream. Returns kStreamDone at a clean end; kFaultCured when a curable
// fault ended the generation under --on-fault restart (everything of it torn
// down, the fatal path's dump, poison mark and abort done). Any other fault
// ends the process through the fatal path.
GenerationEnd run_generation(const RunConfig& config, const RankEnv& env, const std::shared_ptr<Store>& base,
                             Store& job_store, std::uint32_t generation, KeptAcrossGenerations& kept) {
  const milliseconds startup(config.startup_deadline_ms);
  std::unique_ptr<Store> store = join_job(base, {env.job_id, env.job_token, generation}, env.rank, startup);
  FlightRecorder recorder;
  recorder.set_phase("startup");
  FatalOptions fatal_options{env.rank, env.world_size, role_of(config, env.rank), generation_dir(env.job_dir, generation)};
  fatal_options.end_generation_on_curable = config.on_fault == OnFault::kRestart;
  if (fatal_options.end_generation_on_curable) {
    // The rank must unwind, not only exit: a thread blocked in a Gloo
    // collective, which abort() cannot interrupt, returns when the op's own
    // timeout (the steady deadline) fires.
    fatal_options.hard_exit_deadline += milliseconds(config.deadline_ms);
  }
  FatalHandler fatal(fatal_options, recorder, store.get());
  WatchdogOptions watchdog_options;
  watchdog_options.startup_deadline = startup;
  watchdog_options.steady_deadline = milliseconds(config.deadline_ms);
  watchdog_options.store = store.get();
  watchdog_options.rank = env.rank;
  watchdog_options.world_size = env.world_size;
  watchdog_options.parent_pid = getppid();
  Watchdog watchdog(watchdog_options, [&fatal](const WatchdogFiring& firing) { fatal.fail(firing); });
  FatalSources sources;
  sources.armed = [&watchdog] { return watchdog.armed(); };
  fatal.set_sources(sources);
  watchdog.start();
  // Every catch runs the fatal path inside the scope of what its abort
  // action and dump sources use (the communicator), never after unwinding
  // it; a generation that ends waits there for the path to finish.
  try {
    // An injected fault strikes once, before the job's first recovery (no
    // current generation published yet): what a recovery must cure, not a
    // fault that recurs in every generation or in a restarted rank.
    const FaultPlan faults(job_has_recovered(job_store) ? std::vector<Injection>{} : config.injections);
    const GroupTable table = group_table_for(config, env.rank, faults);
    const GroupBackendPlan backends = plan_group_backends_here(config);
    const ParityOutcome parity = exchange_parity(
        *store, make_parity_record(env.rank, parity_inputs(config, env.rank, faults, table, backends)),
        env.world_size, startup);
    // Outlives the communicator: its NCCL backends order against the GPU's stream.
    const std::map<std::string, std::string> my_backends = member_backends(backends, table, env.rank);
    if (kept.gpu == nullptr) kept.gpu = open_rank_gpu(my_backends, backends, env.rank, milliseconds(config.deadline_ms));
    GpuRank* const gpu = kept.gpu.get();
    GlooBackendFactory gloo(gloo_options_from_environment());
    GroupBackendRouter router({{"gloo", &gloo}, {"nccl", gpu != nullptr ? &gpu->nccl_factory() : nullptr}},
                              my_backends);
    GuardObserver observers(recorder, &watchdog);
    CommunicatorOptions comm_options{env.rank, table, make_standard_phase_policy(), Phase::kStartup, startup};
    Communicator comm(comm_options, router, *store, &observers);
    // Watches the model's stream-ordered mesh sums (declared after the
    // communicator: its probes share the NCCL backends' state).
    std::optional<CompletionTracker> tracker;
    if (gpu != nullptr) {
      tracker.emplace(observers, [&fatal](const Error& error) { fatal.fail(error); });
      comm.set_completion_sink(&*tracker);
    }
    const ReleaseBoundGenerator release_bound_generator(kept.generator);
    try {
      fatal.set_abort_action(faults.active(FaultId::kC5, env.rank, config.nproc - 1)
                                 ? std::function<void()>(hang_forever)
                                 : std::function<void()>([&comm] { comm.abort(); }));
      sources.ledgers = [&comm] { return ledger_summaries(comm.gate()); };
      fatal.set_sources(sources);
      const std::uint64_t frame_token = job_token_digest(env.job_token, generation);
      RankContext context{config, env.rank, env.world_size, env.job_id, generation, env.job_dir, *store, job_store,
                          comm, recorder, watchdog, fatal, faults,
                          FrameContext{parity.protocol_version, env.rank, frame_token},
                          FrameExpectations{frame_token, parity.protocol_version},
                          gpu, backends.stage0_on_gpu};
      run_role(context, kept.generator);
      if (!fatal.tripped()) {
        // Destroying the backends aborts their communicators: let the
        // stream-ordered calls still on the GPU finish first (bounded).
        if (tracker) {
          for (std::size_t lane = 0; lane < table.groups().size(); ++lane) {
            tracker->wait_lane(lane, milliseconds(config.deadline_ms));
          }
        }
        watchdog.stop();
        if (config.dump_on_exit) fatal.dump_now({DumpReasonKind::kExit, "exit", "clean end of the stream", 0});
      }
    } catch (...) {
      fatal.fail_current_exception();
    }
    fatal.await_fatal_path();
  } catch (...) {
    fatal.fail_current_exception();
    fatal.await_fatal_path();
  }
  return fatal.tripped() ? GenerationEnd::kFaultCured : GenerationEnd::kStreamDone;
}

}  // namespace

int run_rank(const RunConfig& config) {
  config.validate();
  const RankEnv env = read_rank_env();
  if (env.world_size != config.nproc) {
    throw Error(ErrorCode::kInvalidArgument, "WORLD_SIZE=" + std::to_string(env.world_size) +
                                                 " but --nproc " + std::to_string(config.nproc));
  }
  const std::shared_ptr<Store> base = open_store(env);
  const std::unique_ptr<Store> job_store = job_level_store(base, {env.job_id, env.job_token, env.generation});
  KeptAcrossGenerations kept;
  std::uint32_t generation = env.generation;
  while (run_generation(config, env, base, *job_store, generation, kept) == GenerationEnd::kFaultCured) {
    // The launcher restarts the ranks that died and begins the next
    // generation; this process joins it with its weights.
    generation = await_generation_after(*job_store, generation, milliseconds(config.startup_deadline_ms));
  }
  return 0;
}

}  // namespace lockstep
