// The watchdog (SPEC §4C): every blocking operation — collective, p2p,
// channel wait, queue wait, drain — runs under a deadline held here, and a
// dedicated thread that never calls the backend or CUDA checks them every
// few milliseconds. The same thread polls the peers' poison marks and,
// optionally, the liveness of the parent process. The first expiry or
// poison it sees is reported exactly once to `on_fire` (normally
// FatalHandler::fail), on the watchdog thread.
//
// Workers and the watchdog share only atomics: arming is a CAS on a slot of a
// fixed array plus relaxed atomic stores; disarming is two atomic stores.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "lockstep/clock.h"
#include "lockstep/collective_observer.h"
#include "lockstep/error.h"
#include "lockstep/flight_recorder.h"
#include "lockstep/store.h"

namespace lockstep {

// Concurrent blocking operations per process (one per blocking thread, plus
// nesting such as a queue wait inside a drain).
inline constexpr std::size_t kWatchdogSlotsMax = 64;
// How often deadlines are checked: the detection latency added to a deadline.
inline constexpr std::chrono::milliseconds kWatchdogCheckPeriodDefault{5};
// Start-up covers connecting groups and the handshake on a loaded CI host.
inline constexpr std::chrono::milliseconds kStartupDeadlineDefault{30'000};
// Steady state: the reference job's slowest blocking step is well under this
// (SPEC §8: steady-state default deadline <= 2 s).
inline constexpr std::chrono::milliseconds kSteadyDeadlineDefault{2'000};
inline constexpr std::chrono::milliseconds kPoisonPollPeriodDefault{50};
inline constexpr std::chrono::milliseconds kParentPollPeriodDefault{100};

struct WatchdogOptions {
  std::chrono::milliseconds startup_deadline = kStartupDeadlineDefault;
  std::chrono::milliseconds steady_deadline = kSteadyDeadlineDefault;
  std::chrono::milliseconds check_period = kWatchdogCheckPeriodDefault;
  // Poison polling: needs `store` (nullptr disables it), this rank and the
  // world size (peers are every other rank).
  Store* store = nullptr;
  int rank = 0;
  int world_size = 1;
  std::chrono::milliseconds poison_poll_period = kPoisonPollPeriodDefault;
  // When > 0, the parent must stay this pid (getppid); a re-parented
  // process means the parent (Stage 0 or the launcher) died.
  pid_t parent_pid = 0;
  std::chrono::milliseconds parent_poll_period = kParentPollPeriodDefault;
};

enum class WatchdogCause : std::uint8_t { kDeadline = 1, kPeerPoison, kParentGone, kSlotsExhausted, kStoreFailed };

struct WatchdogFiring {
  WatchdogCause cause = WatchdogCause::kDeadline;
  ErrorCode code = ErrorCode::kTimeout;  // kTimeout, kPeerFailure, kLimit or kStore
  std::string message;                   // names the operation, group, seq or peer
  ArmedDeadline expired;                 // kDeadline only
  int peer_rank = -1;                    // kPeerPoison only
};

class Watchdog final : public CollectiveObserver {
 public:
  // Identifies one arming; pass it back to disarm().
  struct Ticket {
    std::uint32_t slot = kNoSlot;
    std::uint64_t generation = 0;
    static constexpr std::uint32_t kNoSlot = 0xffffffffu;
  };

  // `on_fire` runs at most once, on the watchdog thread (or on the thread
  // calling check_now()); it normally never returns (FatalHandler::fail).
  // `clock` must outlive the watchdog. Throws Error{kInvalidArgument} for a
  // non-positive deadline or period, or a rank outside [0, world_size).
  Watchdog(WatchdogOptions options, std::function<void(const WatchdogFiring&)> on_fire,
           const Clock& clock = steady_clock());
  ~Watchdog() override;  // stops the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Starts / stops the checking thread. Owner thread only; stop() blocks
  // until the thread has left (at most one check period, unless on_fire is
  // running, which ends the process). start() twice throws Error{kInternal}.
  void start();
  void stop();

  // Arms a deadline `timeout` from now (or the current phase's deadline).
  // Non-blocking, lock-free, any thread. When every slot is taken the ticket
  // has no slot and the watchdog fires kSlotsExhausted at its next check:
  // an operation is never left unguarded silently.
  Ticket arm(std::string_view what, std::string_view group = {}, std::uint64_t group_seq = 0) noexcept;
  Ticket arm_for(std::chrono::milliseconds timeout, std::string_view what,
                 std::string_view group = {}, std::uint64_t group_seq = 0) noexcept;
  // Releases the slot. Non-blocking, any thread; a stale ticket is a no-op.
  void disarm(Ticket ticket) noexcept;

  // Switches arm() from the start-up to the steady-state deadline (the
  // runtime calls it once the handshake is done). Non-blocking, any thread.
  void enter_steady_state() noexcept;
  std::chrono::milliseconds current_deadline() const noexcept;

  // CollectiveObserver: `started` arms with the deadline of the event's phase
  // (start-up phase: start-up deadline; else steady), `completed`/`failed`
  // disarm. Comm thread; non-blocking.
  void on_collective(const CollectiveEvent& event) noexcept override;

  // One check: deadlines, then (when their period has passed) poison marks
  // and the parent. Calls on_fire and returns true on the first firing; never
  // fires twice. The thread calls this every check_period; tests and the
  // simulator call it directly with a fake clock. Not concurrently with itself.
  bool check_now();

  // The operations armed right now (for the dump). Non-blocking, any thread.
  std::vector<ArmedDeadline> armed() const;
  bool fired() const noexcept { return fired_.load(std::memory_order_acquire); }

 private:
  struct Slot;
  std::optional<ArmedDeadline> read_slot(std::uint32_t index) const;
  std::optional<WatchdogFiring> find_expired(std::int64_t now_ns) const;
  std::optional<WatchdogFiring> poll_peers(std::int64_t now_ns);
  void fire(const WatchdogFiring& firing);
  void run();

  const WatchdogOptions options_;
  const std::function<void(const WatchdogFiring&)> on_fire_;
  const Clock& clock_;
  std::unique_ptr<Slot[]> slots_;
  std::atomic<bool> steady_{false};
  std::atomic<bool> slots_exhausted_{false};
  std::atomic<bool> fired_{false};
  std::int64_t next_poison_poll_ns_ = 0;  // check_now() only
  std::int64_t next_parent_poll_ns_ = 0;  // check_now() only
  // Between the owner and the watchdog thread only (to stop it promptly).
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stop_requested_ = false;
  std::thread thread_;
};

// Arms on construction, disarms on destruction: the form every blocking wait
// outside comm uses (channel wait, queue wait, drain).
class WatchdogScope {
 public:
  WatchdogScope(Watchdog& watchdog, std::string_view what, std::string_view group = {}) noexcept
      : watchdog_(watchdog), ticket_(watchdog.arm(what, group)) {}
  WatchdogScope(Watchdog& watchdog, std::chrono::milliseconds timeout, std::string_view what,
                std::string_view group = {}) noexcept
      : watchdog_(watchdog), ticket_(watchdog.arm_for(timeout, what, group)) {}
  ~WatchdogScope() { watchdog_.disarm(ticket_); }
  WatchdogScope(const WatchdogScope&) = delete;
  WatchdogScope& operator=(const WatchdogScope&) = delete;

 private:
  Watchdog& watchdog_;
  Watchdog::Ticket ticket_;
};

}  // namespace lockstep
