// The deterministic simulator (SPEC §7, last paragraph): Stage 0 and every
// mesh rank of a pp job run in one process and one thread, on simulated time,
// with a simulated network, store and collective backend, all scheduled from
// one seed. The protocol pieces are the real ones — wire preflight/decode and
// checksums, the guarded Communicator and its ledgers, ResultAcceptance and
// EnvelopeSequencer, the KV-cache lifecycle and state digest — driven the way
// src/runtime drives them, but event by event instead of by blocking threads.
//
// Faults are drawn from the seed, and so are their rates (swarm testing):
// message delay, drop, duplicate, reorder and corruption; rank crash, rank
// pause, slow stages and hard cuts at random chunks. Every run is judged:
//  - safety: no stale or duplicate emit, no result accepted from a wrong
//    epoch, equal KV-state and ledger digests on every mesh rank for every
//    emitted chunk, no backend call after abort, no corrupted frame accepted,
//    no chunk lost on a completed run;
//  - liveness: every rank ends (cleanly, or through the fatal path with an
//    ErrorCode) within a bounded simulated time.
// Same seed ⇒ same fault schedule, same events, same final hash.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/recovery.h"

namespace lockstep {

// Test-only protocol bugs that prove the safety checks can fail. Each is a
// deliberately wrong path inside src/sim; production code has no switch.
enum class PlantedBug : std::uint8_t {
  kNone = 0,
  // Stage 0 hands results to acceptance under its own epoch and does not
  // fence at hard cuts, so results computed before a cut are accepted after it.
  kSkipEpochFence = 1,
  // Stage 0 has no deadline on awaited results: a lost result leaves it
  // heartbeating forever and the mesh waiting — a hang the liveness bound must catch.
  kNoResultDeadline = 2,
  // Recovery without the generation fence: frames carry generation 0 in
  // every generation and Stage 0 emits without checking that its generation
  // is still the current one, so a straggler's work reaches the new generation.
  kNoGenerationFence = 3,
};

// "none", "skip-epoch-fence", "no-result-deadline", "no-generation-fence".
std::string_view planted_bug_name(PlantedBug bug);
// Throws Error{kInvalidArgument} listing the known names.
PlantedBug planted_bug_from_name(std::string_view name);

// Chunks a run streams unless SimOptions::chunks says otherwise: the seed
// picks a count in [kSimChunksMin, kSimChunksMax].
inline constexpr int kSimChunksMin = 3;
inline constexpr int kSimChunksMax = 8;
// Restarts one run may make under OnFault::kRestart (the budget's window is the whole run).
inline constexpr int kSimRestartsMax = 3;

struct SimOptions {
  std::uint64_t seed = 0;
  PlantedBug planted_bug = PlantedBug::kNone;
  // 0: drawn from the seed. Otherwise in [1, kSimChunksMax].
  int chunks = 0;
  // Keep the fault schedule as text in SimOutcome (costs time; for replays).
  bool record_schedule = false;
  // kRestart: a generation that ends with curable faults (recovery.h) is
  // followed by the next, up to kSimRestartsMax restarts per run.
  OnFault on_fault = OnFault::kExit;
};

enum class SimVerdict : std::uint8_t {
  kCompleted,           // every rank of the last generation exited cleanly, every chunk accounted for
  kDiagnosed,           // a rank failed with an ErrorCode (or crashed); all others ended in bound
  kSafetyViolation,     // an oracle check failed (see SimOutcome::violation)
  kLivenessViolation,   // some rank had not ended by the simulated-time bound
};

// "completed", "diagnosed", "safety_violation", "liveness_violation".
std::string_view sim_verdict_name(SimVerdict verdict);

// Which fault kinds the run actually exercised (injected at least once).
enum class SimFault : std::uint8_t {
  kDelay, kDrop, kDuplicate, kReorder, kCorrupt, kCrash, kPause, kSlowStage, kHardCut,
};
inline constexpr int kSimFaultCount = 9;
// "delay", "drop", "duplicate", "reorder", "corrupt", "crash", "pause", "slow_stage", "hard_cut".
std::string_view sim_fault_name(SimFault fault);

struct SimCounters {
  std::uint64_t events = 0;
  std::uint64_t chunks_emitted = 0;
  std::uint64_t stale_drops = 0;
  std::uint64_t duplicate_drops = 0;  // results at Stage 0 and envelopes at the mesh
  std::uint64_t backend_calls = 0;
  std::uint64_t faults[kSimFaultCount] = {};
  std::uint64_t recoveries = 0;              // generations started after the first
  std::uint64_t stale_generation_drops = 0;  // frames of another generation refused where they arrived
  std::uint64_t fenced_emits = 0;            // chunks a Stage 0 of an ended generation did not emit
};

struct SimOutcome {
  SimVerdict verdict = SimVerdict::kCompleted;
  // Digest of everything observable: verdict, emitted chunks and their output
  // digests, the diagnosis, counters and the end time. Equal for equal seeds.
  std::uint64_t final_hash = 0;
  std::int64_t end_time_ns = 0;  // simulated
  std::string diagnosis;  // kDiagnosed: "rank 1: timeout: ..." (first failure)
  // kDiagnosed: error_code_name() of the first failure, or "crash" when the
  // only ending was a crashed rank.
  std::string diagnosis_kind;
  std::string violation;  // kSafetyViolation / kLivenessViolation: what broke
  std::string schedule;   // the drawn configuration and every fault, if recorded
  SimCounters counters;

  bool ok() const noexcept {
    return verdict == SimVerdict::kCompleted || verdict == SimVerdict::kDiagnosed;
  }
};

// Runs one seed to its end. Deterministic (no wall clock, no threads, no
// global state); blocking only on CPU, typically well under a millisecond of
// real time. Any thread (all state is local to the call). Never
// throws for anything the simulated job does — that is the outcome; throws
// Error{kInvalidArgument} for options out of range.
SimOutcome run_simulation(const SimOptions& options);

// `lockstep sim --seed S [--planted-bug NAME] [--on-fault restart]`: how to replay one seed.
std::string sim_replay_command(std::uint64_t seed, PlantedBug bug, OnFault on_fault);

// Violations a sweep keeps in full (the rest are only counted).
inline constexpr std::size_t kSimSweepViolationsKeptMax = 10;

struct SimSweepOptions {
  std::uint64_t start_seed = 0;
  std::uint64_t seeds = 0;
  PlantedBug planted_bug = PlantedBug::kNone;
  int chunks = 0;  // as SimOptions::chunks
  // Every replay_every-th seed (and every violating one) runs twice; a
  // different final hash is a violation (nondeterminism). 0: never.
  std::uint64_t replay_every = 100;
  // Stop once this many seeds violated (a planted-bug hunt); 0: run all seeds.
  std::uint64_t stop_after_violations = 0;
  OnFault on_fault = OnFault::kExit;  // as SimOptions::on_fault
};

struct SimSweepReport {
  std::uint64_t seeds = 0;  // seeds run (fewer than asked when stopped early)
  std::uint64_t completed = 0;
  std::uint64_t diagnosed = 0;
  std::uint64_t violations = 0;
  std::uint64_t replayed = 0;
  std::uint64_t seeds_with_fault[kSimFaultCount] = {};  // seeds that exercised each fault
  std::uint64_t seeds_with_stale_drops = 0;      // the epoch fence actually dropped something
  std::uint64_t seeds_with_duplicate_drops = 0;  // a duplicate filter actually dropped something
  std::uint64_t seeds_recovered = 0;             // completed after at least one recovery
  std::uint64_t seeds_with_stale_generation = 0;  // a straggler's frame or emit was refused
  std::map<std::string, std::uint64_t> diagnosed_by_kind;  // SimOutcome::diagnosis_kind → seeds
  struct Failure {
    std::uint64_t seed;
    SimOutcome outcome;
  };
  std::vector<Failure> failures;  // the first kSimSweepViolationsKeptMax violations, in seed order
};

// Runs seeds [start_seed, start_seed + seeds). Blocking, CPU only; any
// thread. Throws as run_simulation.
SimSweepReport run_simulation_sweep(const SimSweepOptions& options);

// "N seeds: X completed, Y diagnosed, Z violations" plus the fault coverage
// line and, per kept violation, its seed, what broke and the replay command.
std::string describe_sweep(const SimSweepReport& report, const SimSweepOptions& options);

}  // namespace lockstep
