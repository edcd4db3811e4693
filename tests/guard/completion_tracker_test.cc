// The completion tracker: progress-based starts, in-order completion per
// lane, failures, bounded lanes and waits.
#include "lockstep/completion_tracker.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "support/error_of.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
using test::error_of;

// Every event the tracker reports, and a bounded wait for one.
class EventLog final : public CollectiveObserver {
 public:
  struct Seen {
    std::string group;
    std::uint64_t seq;
    CollectiveState state;
    std::string error;
  };

  void on_collective(const CollectiveEvent& event) noexcept override {
    {
      const std::lock_guard lock(mutex_);
      seen_.push_back({std::string(event.group), event.group_seq, event.state, std::string(event.error_message)});
    }
    cv_.notify_all();
  }

  // True once (group, seq, state) was reported, waiting at most 10 s.
  bool await(const std::string& group, std::uint64_t seq, CollectiveState state) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return has(group, seq, state); });
  }

  bool saw(const std::string& group, std::uint64_t seq, CollectiveState state) {
    const std::lock_guard lock(mutex_);
    return has(group, seq, state);
  }

  std::vector<Seen> seen() {
    const std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  bool has(const std::string& group, std::uint64_t seq, CollectiveState state) const {
    for (const Seen& s : seen_) {
      if (s.group == group && s.seq == seq && s.state == state) return true;
    }
    return false;
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Seen> seen_;
};

CollectiveEvent call(std::string_view group, std::uint64_t seq) {
  CollectiveEvent event;
  event.group = group;
  event.group_seq = seq;
  event.op = CollectiveOp::kAllReduce;
  event.dtype = DType::kF32;
  event.count = 16;
  event.state = CollectiveState::kEnqueued;
  return event;
}

struct Probes {
  FlagProbe* raw = nullptr;
  std::unique_ptr<CompletionProbe> owned;
};

Probes probe() {
  auto owned = std::make_unique<FlagProbe>();
  FlagProbe* raw = owned.get();
  return {raw, std::move(owned)};
}

TEST(CompletionTracker, ACallStartsOnlyWhenThePreviousOneOnItsLaneCompleted) {
  EventLog log;
  CompletionTracker tracker(log, [](const Error&) { ADD_FAILURE() << "no failure expected"; });
  Probes first = probe();
  Probes second = probe();
  tracker.track(0, call("mesh", 0), std::move(first.owned), milliseconds(1000));
  tracker.track(0, call("mesh", 1), std::move(second.owned), milliseconds(1000));
  ASSERT_TRUE(log.await("mesh", 0, CollectiveState::kStarted));
  EXPECT_FALSE(log.saw("mesh", 1, CollectiveState::kStarted));  // its deadline has not begun
  EXPECT_EQ(tracker.in_flight(0), 2u);

  // Completing the second first changes nothing: the lane is in order.
  second.raw->set_done();
  first.raw->set_done();
  ASSERT_TRUE(log.await("mesh", 1, CollectiveState::kCompleted));
  tracker.wait_lane(0, milliseconds(10'000));
  EXPECT_EQ(tracker.in_flight(0), 0u);
  EXPECT_EQ(tracker.completed_calls(), 2u);

  std::vector<std::pair<std::uint64_t, CollectiveState>> order;
  for (const auto& seen : log.seen()) order.emplace_back(seen.seq, seen.state);
  const std::vector<std::pair<std::uint64_t, CollectiveState>> expected = {
      {0, CollectiveState::kStarted},
      {0, CollectiveState::kCompleted},
      {1, CollectiveState::kStarted},
      {1, CollectiveState::kCompleted}};
  EXPECT_EQ(order, expected);
}

TEST(CompletionTracker, LanesProgressIndependently) {
  EventLog log;
  CompletionTracker tracker(log, [](const Error&) { ADD_FAILURE() << "no failure expected"; });
  Probes stuck = probe();
  Probes free = probe();
  tracker.track(0, call("mesh", 0), std::move(stuck.owned), milliseconds(1000));
  tracker.track(1, call("boundary", 0), std::move(free.owned), milliseconds(1000));
  free.raw->set_done();
  ASSERT_TRUE(log.await("boundary", 0, CollectiveState::kCompleted));
  EXPECT_FALSE(log.saw("mesh", 0, CollectiveState::kCompleted));
  stuck.raw->set_done();
  tracker.wait_lane(0, milliseconds(10'000));
}

TEST(CompletionTracker, WaitLaneTimesOutNamingTheOldestPendingCall) {
  EventLog log;
  CompletionTracker tracker(log, [](const Error&) {});
  Probes pending = probe();
  tracker.track(3, call("mesh", 41), std::move(pending.owned), milliseconds(1000));
  const Error error = error_of([&] { tracker.wait_lane(3, milliseconds(20)); });
  EXPECT_EQ(error.code(), ErrorCode::kTimeout);
  EXPECT_NE(std::string(error.what()).find("group 'mesh' seq 41 all_reduce"), std::string::npos) << error.what();
  pending.raw->set_done();
  tracker.wait_lane(3, milliseconds(10'000));
}

TEST(CompletionTracker, AFailedProbeIsReportedAndEndsPolling) {
  EventLog log;
  std::mutex mutex;
  std::condition_variable cv;
  std::optional<Error> failure;
  CompletionTracker tracker(log, [&](const Error& error) {
    const std::lock_guard lock(mutex);
    failure = error;
    cv.notify_all();
  });
  Probes failing = probe();
  tracker.track(0, call("mesh", 7), std::move(failing.owned), milliseconds(1000));
  failing.raw->set_failed("unhandled cuda error");
  std::unique_lock lock(mutex);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return failure.has_value(); }));
  EXPECT_EQ(failure->code(), ErrorCode::kBackend);
  EXPECT_NE(std::string(failure->what()).find("group 'mesh' seq 7 all_reduce failed: unhandled cuda error"),
            std::string::npos)
      << failure->what();
  const auto seen = log.seen();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().state, CollectiveState::kFailed);
  EXPECT_EQ(seen.back().error, "unhandled cuda error");
}

TEST(CompletionTracker, AFullLaneIsBackpressureBoundedByTheCallersTimeout) {
  EventLog log;
  CompletionTrackerOptions one_in_flight;
  one_in_flight.in_flight_max = 1;
  CompletionTracker tracker(log, [](const Error&) {}, one_in_flight);
  Probes head = probe();
  tracker.track(0, call("mesh", 0), std::move(head.owned), milliseconds(1000));
  Probes next = probe();
  const Error error = error_of([&] { tracker.track(0, call("mesh", 1), std::move(next.owned), milliseconds(20)); });
  EXPECT_EQ(error.code(), ErrorCode::kTimeout);
  EXPECT_NE(std::string(error.what()).find("lane 0 stayed full (1 calls in flight)"), std::string::npos);
  head.raw->set_done();
  Probes after = probe();
  tracker.track(0, call("mesh", 1), std::move(after.owned), milliseconds(10'000));  // room again
  after.raw->set_done();
  tracker.wait_lane(0, milliseconds(10'000));
}

TEST(CompletionTracker, RejectsBadLanesAndOptions) {
  EventLog log;
  CompletionTrackerOptions none_in_flight;
  none_in_flight.in_flight_max = 0;
  EXPECT_EQ(test::code_of([&] { CompletionTracker bad(log, {}, none_in_flight); }), ErrorCode::kInvalidArgument);
  CompletionTracker tracker(log, [](const Error&) {});
  Probes p = probe();
  EXPECT_EQ(test::code_of([&] { tracker.track(kCompletionLanesMax, call("mesh", 0), std::move(p.owned), milliseconds(1)); }),
            ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace lockstep
