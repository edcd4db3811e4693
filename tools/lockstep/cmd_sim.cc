// `lockstep sim --seed S | --seeds N [--start S] [--planted-bug NAME] [--on-fault exit|restart]`: the
// deterministic simulator (SPEC §7). One seed prints its fault schedule,
// outcome and final hash, replayed once to check the hash; many seeds print
// a summary and, for each violation, the command that replays it. Exit
// status 1 on any violation.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "lockstep/digest.h"
#include "lockstep/simulator.h"

namespace lockstep::cli {
namespace {

struct SimArgs {
  std::uint64_t seed = 0;
  std::uint64_t seeds = 0;
  std::uint64_t start = 0;
  std::string planted_bug = "none";
  std::string on_fault = "exit";
  int chunks = 0;
};

void print(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

void run_one(const SimArgs& args, PlantedBug bug, OnFault on_fault) {
  const SimOptions options{args.seed, bug, args.chunks, true, on_fault};
  const SimOutcome outcome = run_simulation(options);
  const SimOutcome replay = run_simulation(options);
  std::string text = "seed " + std::to_string(args.seed) + " (planted bug: " + std::string(planted_bug_name(bug)) +
                     ")\n" + outcome.schedule;
  text += "outcome: " + std::string(sim_verdict_name(outcome.verdict)) + " at " +
          std::to_string(static_cast<double>(outcome.end_time_ns) / 1e6) + " simulated ms after " +
          std::to_string(outcome.counters.events) + " events, " + std::to_string(outcome.counters.chunks_emitted) +
          " chunks emitted, " + std::to_string(outcome.counters.stale_drops) + " stale drops, " +
          std::to_string(outcome.counters.duplicate_drops) + " duplicate drops, " +
          std::to_string(outcome.counters.recoveries) + " recoveries, " +
          std::to_string(outcome.counters.stale_generation_drops) + " frames of another generation dropped, " +
          std::to_string(outcome.counters.fenced_emits) + " emits fenced\n";
  if (!outcome.diagnosis.empty()) text += "diagnosis: " + outcome.diagnosis + "\n";
  if (!outcome.violation.empty()) text += "violation: " + outcome.violation + "\n";
  text += "final hash: " + digest_hex(outcome.final_hash) + " (replay: " +
          (replay.final_hash == outcome.final_hash ? "same" : "DIFFERENT " + digest_hex(replay.final_hash)) + ")\n";
  print(text);
  if (!outcome.ok() || replay.final_hash != outcome.final_hash) throw CLI::RuntimeError(1);
}

void run_many(const SimArgs& args, PlantedBug bug, OnFault on_fault) {
  const auto started = std::chrono::steady_clock::now();
  SimSweepOptions options{args.start, args.seeds, bug, args.chunks};
  options.on_fault = on_fault;
  const SimSweepReport report = run_simulation_sweep(options);
  const double elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  print(describe_sweep(report, options) + "wall time: " + std::to_string(elapsed_s) + " s\n");
  if (report.violations > 0) throw CLI::RuntimeError(1);
}

}  // namespace

void register_sim(CLI::App& app) {
  auto args = std::make_shared<SimArgs>();
  auto* cmd = app.add_subcommand("sim", "Deterministic simulator: run seeds of the protocol under faults "
                                        "(exit status 1 on any safety or liveness violation)");
  auto* seed = cmd->add_option("--seed", args->seed, "replay one seed: print its fault schedule and outcome");
  auto* seeds = cmd->add_option("--seeds", args->seeds, "run this many seeds and print a summary");
  cmd->add_option("--start", args->start, "first seed of --seeds (default 0)")->needs(seeds);
  cmd->add_option("--planted-bug", args->planted_bug,
                  "test-only protocol bug: none, skip-epoch-fence, no-result-deadline, no-generation-fence");
  cmd->add_option("--on-fault", args->on_fault, "exit (default) or restart: recover into a new generation");
  cmd->add_option("--chunks", args->chunks, "chunks per run (default: drawn from the seed)")
      ->check(CLI::Range(0, kSimChunksMax));
  seed->excludes(seeds);
  cmd->callback([args, seed, seeds] {
    const PlantedBug bug = planted_bug_from_name(args->planted_bug);
    const OnFault on_fault = on_fault_from_name(args->on_fault);
    if (seeds->count() > 0) {
      run_many(*args, bug, on_fault);
    } else if (seed->count() > 0) {
      run_one(*args, bug, on_fault);
    } else {
      throw CLI::ValidationError("sim", "give --seed S or --seeds N");
    }
  });
}

}  // namespace lockstep::cli
