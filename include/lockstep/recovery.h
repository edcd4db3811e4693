// Warm recovery policy (SPEC §4C, "microreboot"): what a fault ends in.
//
// Under OnFault::kExit a fault ends the job (crash > hang). Under kRestart
// the failed rank still goes down, and the survivors' groups are not rebuilt
// in place either: every survivor aborts its communicators, keeps its
// process, weights and device context, and joins a *new generation* of the
// job (job_token.h) — fresh store prefix, ring names, poison keys and
// generation-bound frame tokens — so nothing of the old generation can reach
// the new one. Stage 0 resumes after the last chunk it emitted, under a new
// epoch (a hard cut): nothing of the old generation is ever emitted.
//
// Only what a restart can cure is restarted: a deadline, a dead or stopped
// peer, a backend or store failure. A deterministic failure (ledger, plan,
// parity, digest, protocol, ...) would fail again the same way; it ends the
// job as under kExit. So does a restart beyond the budget below.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <optional>
#include <string_view>

#include "lockstep/error.h"
#include "lockstep/store.h"

namespace lockstep {

enum class OnFault : std::uint8_t { kExit, kRestart };

// "exit", "restart".
std::string_view on_fault_name(OnFault policy);
// Throws Error{kInvalidArgument} naming the value and the known names.
OnFault on_fault_from_name(std::string_view name);

// True for the codes whose cause lies outside the job's own data and
// arguments: kTimeout, kPeerFailure, kAborted, kBackend, kStore.
bool restart_can_cure(ErrorCode code);
// The same for a rank's process ending as the launcher sees it: an exit code
// of one of those codes, the hard-exit deadline (abort hung), or death by a
// signal (`signal` > 0: kill -9, OOM killer).
bool restart_can_cure_exit(int exit_code, int signal);

// Restarts allowed per sliding window (the bound on one recovery is the
// launcher's, launcher.h kLaunchRecoveryMsDefault).
inline constexpr int kRestartsPerWindowDefault = 3;
inline constexpr std::int64_t kRestartWindowMsDefault = 60'000;
inline constexpr int kRestartsPerWindowMax = 100;

// Admits restarts while fewer than `restarts_max` were admitted in the last
// `window_ns`: a rank that faults again at once is not restarted forever.
// Single-thread use; time is whatever clock the caller reads.
class RestartBudget {
 public:
  // Throws Error{kInvalidArgument} for restarts_max outside
  // [0, kRestartsPerWindowMax] or window_ns <= 0.
  RestartBudget(int restarts_max, std::int64_t window_ns);
  // True (and counts it) when one more restart fits at `now_ns`.
  bool admit(std::int64_t now_ns);

 private:
  const int restarts_max_;
  const std::int64_t window_ns_;
  std::deque<std::int64_t> admitted_ns_;  // at most restarts_max_ entries
};

// Job-level keys (job_token.h job_level_store): they live outside every
// generation's prefix, so a new generation (and a replacement Stage 0) can
// read them.
//  - the current generation, published by the launcher when a recovery
//    begins: Stage 0 emits only while it equals its own (a straggler of an
//    earlier generation that wakes up emits nothing);
//  - the stream position: the first chunk not yet emitted and the epoch it
//    streams in, published by Stage 0 after every emit and hard cut (only
//    while its generation is the current one); every rank of a new
//    generation starts from it (generation_start).
struct StreamPosition {
  std::uint64_t next_chunk = 0;  // the first chunk not yet emitted
  std::uint64_t epoch = 0;
};

// Store calls; blocking as the store; any thread. Throw Error{kStore} from
// the store, and Error{kDecode} naming the key for a malformed value.
//
// Whether the launcher has begun any recovery in this job (a current
// generation is published).
bool job_has_recovered(Store& job_store);
std::uint32_t read_current_generation(Store& job_store);  // 0 before any recovery
void publish_stream_position(Store& job_store, const StreamPosition& position);
// The launcher's step when generation `next` begins: the current
// generation, then the key "generation/<next>" that await_generation_after()
// waits for.
void begin_generation(Store& job_store, std::uint32_t next);
// Where a generation's stream starts: chunk 0 in epoch 0 before any
// recovery; after one, the first chunk not yet emitted under the epoch after
// the last one used (a hard cut). Every rank of the generation reads it after
// the generation's world barrier: by then no process of an earlier
// generation writes the position any more (a survivor ended its old
// generation before joining, a replaced rank's old process is dead), so all
// of them read the same value.
StreamPosition generation_start(Store& job_store);
// Stage 0's emit fence: true before any recovery (no current generation
// published) or while the launcher's current generation is `generation`.
bool generation_is_current(Store& job_store, std::uint32_t generation);
// Stage 0 just before an emit (and at a hard cut): the fence, then the
// position. Throws Error{kPeerFailure} naming both generations when
// `generation` is no longer the current one (the launcher began the next: a
// peer died, nothing of this generation may be emitted, and the curable
// fault takes the rank into the next generation); what the store throws.
void advance_stream(Store& job_store, std::uint32_t generation, const StreamPosition& position);
// A rank whose generation `ended` (a curable fault): blocks until the
// launcher began a later generation and returns the current one. Throws
// Error{kTimeout} naming `ended` when none began within `timeout` (the
// launcher ended the job: its restart budget was spent, or the fault could
// not be cured), and what the store throws.
std::uint32_t await_generation_after(Store& job_store, std::uint32_t ended, std::chrono::milliseconds timeout);

// A survivor keeps its weights across generations, and a replacement loads
// them again: either way the weight fingerprint `rank` computed at this
// generation's handshake (computed again, never cached) must equal the one
// recorded at the rank's first handshake of the job, which this records.
// Throws Error{kParity} naming the rank, both fingerprints and generations,
// and what the store throws.
void check_kept_weights(Store& job_store, int rank, std::uint32_t generation, std::uint64_t fingerprint);

// Where a generation's fatal dumps go: the job directory itself for the
// first generation, <job_dir>/generations/g<G> for a later one, so the
// doctor can read every generation's dumps and none replaces another's.
std::filesystem::path generation_dir(const std::filesystem::path& job_dir, std::uint32_t generation);

}  // namespace lockstep
