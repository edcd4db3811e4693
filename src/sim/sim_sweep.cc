// Many seeds in a row: the CI budget run and `lockstep sim --seeds N`.
#include <cstdio>

#include "lockstep/digest.h"
#include "lockstep/simulator.h"

namespace lockstep {

std::string sim_replay_command(std::uint64_t seed, PlantedBug bug, OnFault on_fault) {
  std::string command = "lockstep sim --seed " + std::to_string(seed);
  if (bug != PlantedBug::kNone) command += " --planted-bug " + std::string(planted_bug_name(bug));
  if (on_fault != OnFault::kExit) command += " --on-fault " + std::string(on_fault_name(on_fault));
  return command;
}

SimSweepReport run_simulation_sweep(const SimSweepOptions& options) {
  SimSweepReport report;
  for (std::uint64_t i = 0; i < options.seeds; ++i) {
    const std::uint64_t seed = options.start_seed + i;
    const SimOptions sim{seed, options.planted_bug, options.chunks, false, options.on_fault};
    SimOutcome outcome = run_simulation(sim);
    const bool replay = !outcome.ok() || (options.replay_every > 0 && i % options.replay_every == 0);
    if (replay) {
      ++report.replayed;
      const SimOutcome again = run_simulation(sim);
      if (again.final_hash != outcome.final_hash && outcome.ok()) {
        outcome.verdict = SimVerdict::kSafetyViolation;
        outcome.violation = "nondeterministic: final hash " + digest_hex(outcome.final_hash) + " then " +
                            digest_hex(again.final_hash);
      }
    }
    ++report.seeds;
    for (int f = 0; f < kSimFaultCount; ++f) report.seeds_with_fault[f] += outcome.counters.faults[f] > 0 ? 1 : 0;
    report.seeds_with_stale_drops += outcome.counters.stale_drops > 0 ? 1 : 0;
    report.seeds_with_duplicate_drops += outcome.counters.duplicate_drops > 0 ? 1 : 0;
    report.seeds_with_stale_generation +=
        outcome.counters.stale_generation_drops + outcome.counters.fenced_emits > 0 ? 1 : 0;
    if (outcome.verdict == SimVerdict::kCompleted) ++report.completed;
    if (outcome.verdict == SimVerdict::kCompleted && outcome.counters.recoveries > 0) ++report.seeds_recovered;
    if (outcome.verdict == SimVerdict::kDiagnosed) {
      ++report.diagnosed;
      ++report.diagnosed_by_kind[outcome.diagnosis_kind];
    }
    if (outcome.ok()) continue;
    ++report.violations;
    if (report.failures.size() < kSimSweepViolationsKeptMax) report.failures.push_back({seed, std::move(outcome)});
    if (options.stop_after_violations > 0 && report.violations >= options.stop_after_violations) break;
  }
  return report;
}

std::string describe_sweep(const SimSweepReport& report, const SimSweepOptions& options) {
  std::string text = std::to_string(report.seeds) + " seeds: " + std::to_string(report.completed) +
                     " completed, " + std::to_string(report.diagnosed) + " diagnosed, " +
                     std::to_string(report.violations) + " violations (" + std::to_string(report.replayed) +
                     " replayed for determinism)\nseeds exercising each fault:";
  for (int f = 0; f < kSimFaultCount; ++f) {
    text += " " + std::string(sim_fault_name(static_cast<SimFault>(f))) + " " +
            std::to_string(report.seeds_with_fault[f]);
  }
  text += "\nseeds with stale drops " + std::to_string(report.seeds_with_stale_drops) + ", with duplicate drops " +
          std::to_string(report.seeds_with_duplicate_drops) + "\n";
  if (options.on_fault == OnFault::kRestart) {
    text += "completed after a recovery " + std::to_string(report.seeds_recovered) +
            ", seeds where a straggler's frame or emit was refused " +
            std::to_string(report.seeds_with_stale_generation) + "\n";
  }
  text += "diagnosed by first failure:";
  for (const auto& [kind, count] : report.diagnosed_by_kind) text += " " + kind + " " + std::to_string(count);
  text += "\n";
  for (const SimSweepReport::Failure& failure : report.failures) {
    text += "seed " + std::to_string(failure.seed) + ": " + std::string(sim_verdict_name(failure.outcome.verdict)) +
            ": " + failure.outcome.violation + "\n  replay: " +
            sim_replay_command(failure.seed, options.planted_bug, options.on_fault) + "\n";
  }
  return text;
}

}  // namespace lockstep
