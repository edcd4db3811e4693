// Completion tracking off the critical path (SPEC §4C; one design for the
// NCCL backend and the guarded PyTorch process groups). A stream-ordered call
// — a collective enqueued on a GPU stream, a torch work handle — returns to
// its caller at once; the tracker learns that it completed by polling a
// CompletionProbe on the tracker's own thread, and reports it to the
// CollectiveObserver (flight recorder + watchdog).
//
// Deadlines run from progress, not from enqueue: the host runs far ahead of
// the GPU, so a call is reported "started" (and the watchdog arms its
// deadline) only when it reaches the head of its lane — when the call before
// it on the same stream completed — and "completed" when its probe says so.
// The watchdog, which makes no backend or CUDA call, enforces the deadline;
// probes may call CUDA, on the poller thread only.
//
// Lanes are FIFO: calls on one lane complete in the order they were tracked
// (a CUDA stream, or one process group's work queue). Each lane holds at
// most in_flight_max calls; track() on a full lane waits for the head to
// complete — backpressure, itself bounded by the head's watchdog deadline and
// by the caller's timeout.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "lockstep/collective_observer.h"
#include "lockstep/completion_probe.h"
#include "lockstep/error.h"
#include "lockstep/flight_recorder.h"

namespace lockstep {

// Lanes per tracker: one per stream or group of a process.
inline constexpr std::size_t kCompletionLanesMax = 32;
inline constexpr std::size_t kCompletionInFlightDefault = 1024;
inline constexpr std::size_t kCompletionInFlightMax = 65536;
// How often the poller looks at the heads while calls are in flight: the
// latency added between a GPU completion and its report.
inline constexpr std::chrono::microseconds kCompletionPollPeriodDefault{20};

// A probe completed from outside: a callback on another library's thread
// (torch's future callbacks) sets it. Thread-safe.
class FlagProbe final : public CompletionProbe {
 public:
  void set_done() noexcept { state_.store(State::kDone, std::memory_order_release); }
  // `message` is truncated to kEventDetailBytesMax when reported.
  void set_failed(std::string message);
  State poll(std::string& error) override;

 private:
  std::atomic<State> state_{State::kPending};
  std::mutex error_mutex_;
  std::string error_;
};

struct CompletionTrackerOptions {
  std::size_t in_flight_max = kCompletionInFlightDefault;  // per lane, 1..kCompletionInFlightMax
  std::chrono::microseconds poll_period = kCompletionPollPeriodDefault;  // > 0
};

class CompletionTracker final : public CompletionSink {
 public:
  // `observer` receives started / completed / failed events and must outlive
  // the tracker. `on_failure` runs on the poller thread for a probe that
  // failed (normally FatalHandler::fail); the tracker stops polling after it.
  // Starts the poller thread. Throws Error{kInvalidArgument} for bad options.
  CompletionTracker(CollectiveObserver& observer, std::function<void(const Error&)> on_failure,
                    CompletionTrackerOptions options = {});
  ~CompletionTracker();  // stops the poller; calls still in flight are dropped
  CompletionTracker(const CompletionTracker&) = delete;
  CompletionTracker& operator=(const CompletionTracker&) = delete;

  // Tracks an enqueued call (event.state is ignored; the tracker reports
  // started and completed/failed). Non-blocking unless the lane is full; then
  // waits for room at most `timeout` and throws Error{kTimeout} naming the
  // lane. Throws Error{kAborted} once a tracked call failed (the poller has
  // stopped), Error{kInvalidArgument} for a lane >= kCompletionLanesMax.
  // Any thread.
  void track(std::size_t lane, const CollectiveEvent& event, std::unique_ptr<CompletionProbe> probe,
             std::chrono::milliseconds timeout) override;

  // Blocks until every call tracked on `lane` before this call completed (a
  // host-side synchronisation point), at most `timeout`; throws
  // Error{kTimeout} naming the oldest pending call. Any thread.
  void wait_lane(std::size_t lane, std::chrono::milliseconds timeout);

  std::size_t in_flight(std::size_t lane) const;
  std::uint64_t completed_calls() const noexcept { return completed_.load(std::memory_order_relaxed); }

 private:
  struct Pending {
    CollectiveEvent event;  // strings point into the fields below
    FixedText<kEventNameBytesMax> group;
    std::unique_ptr<CompletionProbe> probe;
    bool started = false;
  };
  struct Lane {
    std::deque<Pending> pending;
    std::uint64_t tracked = 0;   // calls ever tracked
    std::uint64_t finished = 0;  // calls ever completed
  };

  void run();
  // Polls every lane's head once; returns whether any call is in flight.
  bool poll_heads();
  void start_head(Lane& lane);

  CollectiveObserver& observer_;
  const std::function<void(const Error&)> on_failure_;
  const CompletionTrackerOptions options_;
  mutable std::mutex mutex_;  // lanes_, stop_; never held across a probe poll or an observer call
  std::condition_variable work_cv_;      // poller: a call was tracked, or stop
  std::condition_variable progress_cv_;  // track()/wait_lane(): a call completed
  std::array<Lane, kCompletionLanesMax> lanes_;
  bool stop_ = false;
  bool failed_ = false;
  std::atomic<std::uint64_t> completed_{0};
  std::thread poller_;
};

}  // namespace lockstep
