#include "lockstep/simulator.h"

#include <array>
#include <memory>
#include <vector>

#include "lockstep/digest.h"
#include "lockstep/error.h"
#include "sim/sim_mesh.h"
#include "sim/sim_stage0.h"
#include "sim/sim_world.h"

namespace lockstep {
namespace {

constexpr std::array<std::string_view, kSimFaultCount> kFaultNames = {
    "delay", "drop", "duplicate", "reorder", "corrupt", "crash", "pause", "slow_stage", "hard_cut"};

// Completed only when every rank exited cleanly; a fatal error (or a crash
// the launcher would see) makes the run diagnosed, naming the earliest.
void judge_ending(sim::World& world, SimOutcome& outcome) {
  bool all_exited = true;
  const sim::SimRank* first = nullptr;
  for (int r = 0; r < world.world_size(); ++r) {
    const sim::SimRank& rank = world.rank(r);
    all_exited = all_exited && rank.state() == sim::RankState::kExited;
    if (rank.state() == sim::RankState::kFailed && (first == nullptr || rank.failed_at_ns() < first->failed_at_ns())) {
      first = &rank;
    }
  }
  if (first != nullptr) {
    outcome.diagnosis = first->failure();
    outcome.diagnosis_kind = error_code_name(first->failure_code());
  }
  for (int r = 0; r < world.world_size() && outcome.diagnosis.empty(); ++r) {
    if (world.rank(r).state() == sim::RankState::kCrashed) {
      outcome.diagnosis = "rank " + std::to_string(r) + " crashed (its exit is what the launcher reports)";
      outcome.diagnosis_kind = "crash";
    }
  }
  outcome.verdict = all_exited ? SimVerdict::kCompleted : SimVerdict::kDiagnosed;
}

std::string stuck_ranks(sim::World& world) {
  std::string text;
  for (int r = 0; r < world.world_size(); ++r) {
    if (!world.rank(r).terminal()) text += (text.empty() ? "" : "; ") + world.rank(r).describe_state();
  }
  return text;
}

std::uint64_t outcome_hash(const SimOutcome& outcome, const sim::Oracle& oracle) {
  std::uint64_t hash = digest_combine(static_cast<std::uint64_t>(outcome.verdict),
                                      static_cast<std::uint64_t>(outcome.end_time_ns));
  for (const auto& [chunk, output_digest] : oracle.emitted()) {
    hash = digest_combine(digest_combine(hash, chunk), output_digest);
  }
  hash = digest_combine(hash, digest_string(outcome.diagnosis));
  hash = digest_combine(hash, digest_string(outcome.violation));
  hash = digest_combine(hash, outcome.counters.events);
  hash = digest_combine(hash, outcome.counters.backend_calls);
  for (const std::uint64_t count : outcome.counters.faults) hash = digest_combine(hash, count);
  hash = digest_combine(hash, outcome.counters.recoveries);
  return hash;
}

}  // namespace

std::string_view planted_bug_name(PlantedBug bug) {
  switch (bug) {
    case PlantedBug::kNone: return "none";
    case PlantedBug::kSkipEpochFence: return "skip-epoch-fence";
    case PlantedBug::kNoResultDeadline: return "no-result-deadline";
    case PlantedBug::kNoGenerationFence: return "no-generation-fence";
  }
  return "unknown";
}

PlantedBug planted_bug_from_name(std::string_view name) {
  for (const PlantedBug bug : {PlantedBug::kNone, PlantedBug::kSkipEpochFence, PlantedBug::kNoResultDeadline,
                               PlantedBug::kNoGenerationFence}) {
    if (planted_bug_name(bug) == name) return bug;
  }
  throw Error(ErrorCode::kInvalidArgument, "unknown planted bug '" + std::string(name) +
                                               "' (known: none, skip-epoch-fence, no-result-deadline, "
                                               "no-generation-fence)");
}

std::string_view sim_verdict_name(SimVerdict verdict) {
  switch (verdict) {
    case SimVerdict::kCompleted: return "completed";
    case SimVerdict::kDiagnosed: return "diagnosed";
    case SimVerdict::kSafetyViolation: return "safety_violation";
    case SimVerdict::kLivenessViolation: return "liveness_violation";
  }
  return "unknown";
}

std::string_view sim_fault_name(SimFault fault) { return kFaultNames.at(static_cast<std::size_t>(fault)); }

SimOutcome run_simulation(const SimOptions& options) {
  const sim::Scenario scenario = sim::draw_scenario(options);
  std::vector<const sim::Stage0Sim*> stage0s;  // one per generation
  sim::World world(scenario, options.record_schedule,
                   [&stage0s](sim::World& w, int rank, std::uint32_t generation) -> std::unique_ptr<sim::SimRank> {
                     if (rank > 0) return std::make_unique<sim::MeshRankSim>(w, rank, generation);
                     auto stage0 = std::make_unique<sim::Stage0Sim>(w, generation);
                     stage0s.push_back(stage0.get());
                     return stage0;
                   });
  const bool ended = world.run();

  SimOutcome outcome;
  outcome.end_time_ns = world.now_ns();
  outcome.counters = world.counters();
  outcome.counters.backend_calls = world.backend_stats().calls;
  for (const sim::Stage0Sim* stage0 : stage0s) {
    outcome.counters.stale_drops += stage0->acceptance_counters().stale_drops + stage0->stale_at_decode();
    outcome.counters.duplicate_drops += stage0->acceptance_counters().duplicate_drops;
  }
  judge_ending(world, outcome);
  if (!ended) {
    outcome.verdict = SimVerdict::kLivenessViolation;
    outcome.violation = "not every rank ended within the bound of " +
                        std::to_string(scenario.bound_ns() / sim::kNsPerMs) + " simulated ms: " + stuck_ranks(world);
  }
  if (world.backend_stats().calls_after_abort > 0) {
    world.oracle().on_backend_after_abort(world.backend_stats().first_after_abort);
  }
  if (world.oracle().violated()) {
    outcome.verdict = SimVerdict::kSafetyViolation;
    outcome.violation = world.oracle().violation();
  }
  outcome.schedule = world.schedule_text();
  outcome.final_hash = outcome_hash(outcome, world.oracle());
  return outcome;
}

}  // namespace lockstep
