// One seed's job and fault plan (swarm testing: which faults are on, and how
// often, is itself drawn from the seed).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/recovery.h"
#include "lockstep/simulator.h"

namespace lockstep::sim {

inline constexpr std::int64_t kNsPerMs = 1'000'000;

// Simulated timing of the job (the runtime's RunConfig knobs, scaled down).
inline constexpr std::int64_t kLinkLatencyNs = 50'000;
inline constexpr std::int64_t kTickNs = 5 * kNsPerMs;          // watchdog / comm-loop poll
inline constexpr std::int64_t kHeartbeatNs = 20 * kNsPerMs;    // Stage 0 NOOP when idle
inline constexpr std::int64_t kDeadlineNs = 100 * kNsPerMs;    // steady-state deadline
inline constexpr std::int64_t kDrainDeadlineNs = 100 * kNsPerMs;
inline constexpr std::int64_t kGeneratorCallNs = 1 * kNsPerMs;
inline constexpr std::int64_t kDecodeNs = 1 * kNsPerMs;
inline constexpr int kMeshSizeMax = 3;
inline constexpr int kDepthMax = 3;
inline constexpr int kSlowFactorMax = 40;  // past deadline / stage time: slow becomes a timeout
inline constexpr std::int64_t kPauseNsMax = 3 * kDeadlineNs;
inline constexpr std::int64_t kDelayNsMax = 3 * kDeadlineNs / 2;
// Recovery (OnFault::kRestart): a survivor aborts and re-rendezvouses; a
// replaced process (crashed, or a straggler) starts and loads its weights.
inline constexpr std::int64_t kRejoinNs = 2 * kNsPerMs;
inline constexpr std::int64_t kRestartNs = 30 * kNsPerMs;

// Tiny model geometry: enough to exercise the KV ring (window < frames
// streamed) at negligible cost.
inline constexpr int kLayers = 2;
inline constexpr int kHeadDim = 2;
inline constexpr int kTokensPerFrame = 2;
inline constexpr int kFramesPerChunk = 1;
inline constexpr int kWindowFrames = 3;

struct Scenario {
  std::uint64_t seed = 0;
  PlantedBug bug = PlantedBug::kNone;
  OnFault on_fault = OnFault::kExit;
  int mesh_size = 1;  // world = mesh_size + 1 (Stage 0 is rank 0)
  int chunks = 0;
  int denoise_steps = 1;
  int recompute_every = 0;  // 0: never
  int depth = 1;            // results in flight or waiting for decode, at most
  std::vector<bool> cut_before_chunk;
  // Per message: probabilities of each network fault.
  double delay_p = 0, drop_p = 0, duplicate_p = 0, reorder_p = 0, corrupt_p = 0;
  int crash_rank = -1;
  std::int64_t crash_at_ns = 0;
  int pause_rank = -1;
  std::int64_t pause_at_ns = 0, pause_ns = 0;
  int slow_rank = -1;  // rank 0: slow decode; mesh rank: slow generator
  int slow_factor = 1;

  int world_size() const { return mesh_size + 1; }
  int dim() const { return mesh_size * kHeadDim; }  // one head per mesh rank
  // Every rank must have ended by then: each chunk either progresses or some
  // deadline fires, a cut adds at most the drain deadline, a pause delays
  // detection by at most its length; each generation a restart adds starts
  // the chunks over at worst.
  std::int64_t bound_ns() const;
  std::string describe() const;
};

Scenario draw_scenario(const SimOptions& options);

}  // namespace lockstep::sim
