#include "sim/sim_scenario.h"

#include <cstdio>

#include "lockstep/error.h"
#include "sim/sim_random.h"

namespace lockstep::sim {
namespace {

// Swarm testing: each fault kind is switched on for about half the seeds,
// and its rate drawn up to these maxima, so some seeds stress one fault hard
// and others combine several lightly.
constexpr double kFaultOnProbability = 0.5;
constexpr double kDelayRateMax = 0.10;
constexpr double kDropRateMax = 0.03;
constexpr double kDuplicateRateMax = 0.15;
constexpr double kReorderRateMax = 0.10;
constexpr double kCorruptRateMax = 0.02;
constexpr double kCutRateMax = 0.5;
constexpr double kCrashProbability = 0.15;
constexpr double kPauseProbability = 0.2;
constexpr double kSlowProbability = 0.3;
// The window in which crashes and pauses start: about a run's length.
constexpr std::int64_t kFaultWindowNsPerChunk = 8 * kNsPerMs;
constexpr std::uint64_t kScenarioStream = 0x5CE7A210ull;

double maybe_rate(Rng& rng, double rate_max) {
  return rng.chance(kFaultOnProbability) ? rng.real() * rate_max : 0.0;
}

}  // namespace

std::int64_t Scenario::bound_ns() const {
  const std::int64_t per_chunk_ns = kDeadlineNs + kDrainDeadlineNs + kDecodeNs * kSlowFactorMax + kTickNs;
  const std::int64_t generation_ns = (chunks + 4) * per_chunk_ns + kPauseNsMax + kDelayNsMax;
  const int generations = on_fault == OnFault::kRestart ? kSimRestartsMax + 1 : 1;
  return generations * (generation_ns + kRestartNs);
}

Scenario draw_scenario(const SimOptions& options) {
  if (options.chunks < 0 || options.chunks > kSimChunksMax) {
    throw Error(ErrorCode::kInvalidArgument, "sim: chunks " + std::to_string(options.chunks) + " outside [0, " +
                                                 std::to_string(kSimChunksMax) + "]");
  }
  Rng rng(options.seed ^ kScenarioStream);
  Scenario s;
  s.seed = options.seed;
  s.bug = options.planted_bug;
  s.on_fault = options.on_fault;
  s.mesh_size = static_cast<int>(rng.between(1, kMeshSizeMax));
  s.chunks = options.chunks > 0 ? options.chunks : static_cast<int>(rng.between(kSimChunksMin, kSimChunksMax));
  s.denoise_steps = static_cast<int>(rng.between(1, 2));
  s.recompute_every = static_cast<int>(rng.between(0, 3));
  s.depth = static_cast<int>(rng.between(1, kDepthMax));
  const double cut_p = maybe_rate(rng, kCutRateMax);
  for (int chunk = 0; chunk < s.chunks; ++chunk) s.cut_before_chunk.push_back(chunk > 0 && rng.chance(cut_p));
  s.delay_p = maybe_rate(rng, kDelayRateMax);
  s.drop_p = maybe_rate(rng, kDropRateMax);
  s.duplicate_p = maybe_rate(rng, kDuplicateRateMax);
  s.reorder_p = maybe_rate(rng, kReorderRateMax);
  s.corrupt_p = maybe_rate(rng, kCorruptRateMax);
  const std::int64_t window_ns = s.chunks * kFaultWindowNsPerChunk;
  if (rng.chance(kCrashProbability)) {
    s.crash_rank = static_cast<int>(rng.between(0, s.mesh_size));
    s.crash_at_ns = rng.between(0, window_ns);
  }
  if (rng.chance(kPauseProbability)) {
    s.pause_rank = static_cast<int>(rng.between(0, s.mesh_size));
    s.pause_at_ns = rng.between(0, window_ns);
    s.pause_ns = rng.between(kNsPerMs, kPauseNsMax);
  }
  if (rng.chance(kSlowProbability)) {
    s.slow_rank = static_cast<int>(rng.between(0, s.mesh_size));
    s.slow_factor = static_cast<int>(rng.between(2, kSlowFactorMax));
  }
  return s;
}

std::string Scenario::describe() const {
  char line[512];
  std::string cuts;
  for (int chunk = 0; chunk < chunks; ++chunk) {
    if (cut_before_chunk[static_cast<std::size_t>(chunk)]) cuts += " " + std::to_string(chunk);
  }
  std::snprintf(line, sizeof line,
                "job: mesh %d rank(s), %d chunks, %d denoise step(s), recompute every %d, depth %d, "
                "hard cuts before chunks [%s ]\n"
                "rates: delay %.3f drop %.3f duplicate %.3f reorder %.3f corrupt %.3f\n"
                "rank faults: crash rank %d at %.3f ms; pause rank %d at %.3f ms for %.3f ms; "
                "slow rank %d x%d; on fault: %s\n",
                mesh_size, chunks, denoise_steps, recompute_every, depth, cuts.c_str(), delay_p, drop_p,
                duplicate_p, reorder_p, corrupt_p, crash_rank, static_cast<double>(crash_at_ns) / kNsPerMs,
                pause_rank, static_cast<double>(pause_at_ns) / kNsPerMs, static_cast<double>(pause_ns) / kNsPerMs,
                slow_rank, slow_factor, std::string(on_fault_name(on_fault)).c_str());
  return line;
}

}  // namespace lockstep::sim
