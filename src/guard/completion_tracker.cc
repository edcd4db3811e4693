#include "lockstep/completion_tracker.h"

#include <string>
#include <utility>

#include "guard/thread_name.h"
#include "lockstep/assert.h"

namespace lockstep {

void FlagProbe::set_failed(std::string message) {
  {
    const std::lock_guard lock(error_mutex_);
    error_ = std::move(message);
  }
  state_.store(State::kFailed, std::memory_order_release);
}

CompletionProbe::State FlagProbe::poll(std::string& error) {
  const State state = state_.load(std::memory_order_acquire);
  if (state == State::kFailed) {
    const std::lock_guard lock(error_mutex_);
    error = error_;
  }
  return state;
}

CompletionTracker::CompletionTracker(CollectiveObserver& observer,
                                     std::function<void(const Error&)> on_failure,
                                     CompletionTrackerOptions options)
    : observer_(observer), on_failure_(std::move(on_failure)), options_(options) {
  if (options_.in_flight_max == 0 || options_.in_flight_max > kCompletionInFlightMax) {
    throw Error(ErrorCode::kInvalidArgument,
                "completion tracker: in_flight_max " + std::to_string(options_.in_flight_max) +
                    " outside [1, " + std::to_string(kCompletionInFlightMax) + "]");
  }
  if (options_.poll_period.count() <= 0) {
    throw Error(ErrorCode::kInvalidArgument, "completion tracker: poll_period must be > 0");
  }
  poller_ = std::thread([this] { run(); });
}

CompletionTracker::~CompletionTracker() {
  {
    const std::lock_guard lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  progress_cv_.notify_all();
  poller_.join();
}

void CompletionTracker::track(std::size_t lane, const CollectiveEvent& event,
                              std::unique_ptr<CompletionProbe> probe, std::chrono::milliseconds timeout) {
  if (lane >= kCompletionLanesMax) {
    throw Error(ErrorCode::kInvalidArgument, "completion tracker: lane " + std::to_string(lane) +
                                                 " >= kCompletionLanesMax " +
                                                 std::to_string(kCompletionLanesMax));
  }
  LOCKSTEP_ASSERT(probe != nullptr);
  std::unique_lock lock(mutex_);
  Lane& target = lanes_[lane];
  if (!progress_cv_.wait_for(lock, timeout, [&] {
        return stop_ || failed_ || target.pending.size() < options_.in_flight_max;
      })) {
    throw Error(ErrorCode::kTimeout, "completion tracker: lane " + std::to_string(lane) + " stayed full (" +
                                         std::to_string(options_.in_flight_max) + " calls in flight) for " +
                                         std::to_string(timeout.count()) + " ms");
  }
  // The poller has left: a call tracked now would never be reported.
  if (stop_ || failed_) {
    throw Error(ErrorCode::kAborted, "completion tracker: stopped after a failed call; nothing would watch group '" +
                                         std::string(event.group) + "' seq " + std::to_string(event.group_seq));
  }
  Pending& pending = target.pending.emplace_back();
  pending.event = event;
  pending.group.assign(event.group);
  pending.event.group = pending.group.view();
  pending.event.error_message = {};
  pending.probe = std::move(probe);
  ++target.tracked;
  lock.unlock();
  work_cv_.notify_one();
}

void CompletionTracker::wait_lane(std::size_t lane, std::chrono::milliseconds timeout) {
  if (lane >= kCompletionLanesMax) {
    throw Error(ErrorCode::kInvalidArgument, "completion tracker: lane " + std::to_string(lane) +
                                                 " >= kCompletionLanesMax");
  }
  std::unique_lock lock(mutex_);
  Lane& target = lanes_[lane];
  const std::uint64_t goal = target.tracked;
  if (progress_cv_.wait_for(lock, timeout, [&] { return stop_ || failed_ || target.finished >= goal; })) {
    return;
  }
  const CollectiveEvent& oldest = target.pending.front().event;
  throw Error(ErrorCode::kTimeout, "completion tracker: lane " + std::to_string(lane) + " still waits on group '" +
                                       std::string(oldest.group) + "' seq " + std::to_string(oldest.group_seq) +
                                       " " + std::string(collective_op_name(oldest.op)) + " after " +
                                       std::to_string(timeout.count()) + " ms");
}

std::size_t CompletionTracker::in_flight(std::size_t lane) const {
  const std::lock_guard lock(mutex_);
  return lane < kCompletionLanesMax ? lanes_[lane].pending.size() : 0;
}

bool CompletionTracker::poll_heads() {
  bool in_flight = false;
  for (Lane& lane : lanes_) {
    while (true) {
      Pending* head = nullptr;
      bool start = false;
      {
        const std::lock_guard lock(mutex_);
        if (lane.pending.empty()) break;
        // The deque only grows at the back meanwhile: `head` stays valid
        // until this thread pops it.
        head = &lane.pending.front();
        start = !head->started;
        head->started = true;
      }
      if (start) {
        CollectiveEvent started = head->event;
        started.state = CollectiveState::kStarted;
        observer_.on_collective(started);
      }
      std::string error;
      const CompletionProbe::State state = head->probe->poll(error);
      if (state == CompletionProbe::State::kPending) {
        in_flight = true;
        break;
      }
      CollectiveEvent ended = head->event;
      const bool failed = state == CompletionProbe::State::kFailed;
      ended.state = failed ? CollectiveState::kFailed : CollectiveState::kCompleted;
      if (failed) {
        ended.error_code = ErrorCode::kBackend;
        ended.error_message = error;
      }
      observer_.on_collective(ended);
      // Named only on failure: the common completion allocates nothing.
      const std::string what = failed ? "group '" + std::string(ended.group) + "' seq " +
                                            std::to_string(ended.group_seq) + " " +
                                            std::string(collective_op_name(ended.op))
                                      : std::string();
      {
        const std::lock_guard lock(mutex_);
        lane.pending.pop_front();
        ++lane.finished;
        failed_ = failed_ || failed;
      }
      completed_.fetch_add(1, std::memory_order_relaxed);
      progress_cv_.notify_all();
      if (failed) {
        on_failure_(Error(ErrorCode::kBackend, what + " failed: " + error));
        return false;
      }
    }
  }
  return in_flight;
}

void CompletionTracker::run() {
  FlightRecorder::name_this_thread("completion");
  while (true) {
    {
      std::unique_lock lock(mutex_);
      work_cv_.wait(lock, [&] {
        if (stop_ || failed_) return true;
        for (const Lane& lane : lanes_) {
          if (!lane.pending.empty()) return true;
        }
        return false;
      });
      if (stop_ || failed_) return;
    }
    while (poll_heads()) {
      std::this_thread::sleep_for(options_.poll_period);
      const std::lock_guard lock(mutex_);
      if (stop_) return;
    }
  }
}

}  // namespace lockstep
