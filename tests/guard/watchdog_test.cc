#include "lockstep/watchdog.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <future>
#include <vector>

#include "guard/fakes.h"
#include "lockstep/poison.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
using test::FakeClock;
using test::MemoryStore;

struct Firings {
  std::vector<WatchdogFiring> seen;
  std::function<void(const WatchdogFiring&)> sink() {
    return [this](const WatchdogFiring& f) { seen.push_back(f); };
  }
};

WatchdogOptions fast_options() {
  WatchdogOptions options;
  options.startup_deadline = milliseconds(1000);
  options.steady_deadline = milliseconds(100);
  return options;
}

TEST(Watchdog, ExpiryFiresExactlyOnceNamingTheOperation) {
  FakeClock clock;
  Firings firings;
  Watchdog watchdog(fast_options(), firings.sink(), clock);
  watchdog.enter_steady_state();
  watchdog.arm("all_reduce", "mesh", 41);
  clock.advance(milliseconds(99));
  EXPECT_FALSE(watchdog.check_now());
  EXPECT_TRUE(firings.seen.empty());
  clock.advance(milliseconds(1));
  EXPECT_TRUE(watchdog.check_now());
  clock.advance(milliseconds(1000));
  EXPECT_TRUE(watchdog.check_now());
  ASSERT_EQ(firings.seen.size(), 1u);
  const WatchdogFiring& f = firings.seen[0];
  EXPECT_EQ(f.cause, WatchdogCause::kDeadline);
  EXPECT_EQ(f.code, ErrorCode::kTimeout);
  EXPECT_EQ(f.expired.what, "all_reduce");
  EXPECT_EQ(f.expired.group, "mesh");
  EXPECT_EQ(f.expired.group_seq, 41u);
  EXPECT_NE(f.message.find("'all_reduce' on group 'mesh' seq 41"), std::string::npos) << f.message;
  EXPECT_TRUE(watchdog.fired());
}

TEST(Watchdog, DisarmPreventsExpiry) {
  FakeClock clock;
  Firings firings;
  Watchdog watchdog(fast_options(), firings.sink(), clock);
  const auto ticket = watchdog.arm_for(milliseconds(10), "queue_wait");
  watchdog.disarm(ticket);
  watchdog.disarm(ticket);  // a stale ticket is a no-op
  clock.advance(milliseconds(10'000));
  EXPECT_FALSE(watchdog.check_now());
  EXPECT_TRUE(firings.seen.empty());
  EXPECT_TRUE(watchdog.armed().empty());
}

TEST(Watchdog, StaleTicketDoesNotDisarmTheSlotsNextUser) {
  FakeClock clock;
  Firings firings;
  Watchdog watchdog(fast_options(), firings.sink(), clock);
  const auto first = watchdog.arm_for(milliseconds(10), "first");
  watchdog.disarm(first);
  const auto second = watchdog.arm_for(milliseconds(10), "second");
  ASSERT_EQ(first.slot, second.slot);
  watchdog.disarm(first);
  clock.advance(milliseconds(10));
  EXPECT_TRUE(watchdog.check_now());
  ASSERT_EQ(firings.seen.size(), 1u);
  EXPECT_EQ(firings.seen[0].expired.what, "second");
}

TEST(Watchdog, StartupAndSteadyDeadlinesAreSeparate) {
  FakeClock clock;
  Firings firings;
  Watchdog watchdog(fast_options(), firings.sink(), clock);
  EXPECT_EQ(watchdog.current_deadline(), milliseconds(1000));
  const auto startup = watchdog.arm("connect");
  clock.advance(milliseconds(500));
  EXPECT_FALSE(watchdog.check_now());
  watchdog.disarm(startup);
  watchdog.enter_steady_state();
  EXPECT_EQ(watchdog.current_deadline(), milliseconds(100));
  watchdog.arm("drain");
  clock.advance(milliseconds(100));
  EXPECT_TRUE(watchdog.check_now());
}

TEST(Watchdog, ObservesCollectivesWithTheirPhaseDeadline) {
  FakeClock clock;
  Firings firings;
  Watchdog watchdog(fast_options(), firings.sink(), clock);
  CollectiveEvent event;
  event.group = "mesh";
  event.group_seq = 5;
  event.op = CollectiveOp::kAllGather;
  event.phase = Phase::kStartup;
  event.state = CollectiveState::kStarted;
  watchdog.on_collective(event);
  ASSERT_EQ(watchdog.armed().size(), 1u);
  EXPECT_EQ(watchdog.armed()[0].what, "all_gather");
  event.state = CollectiveState::kCompleted;
  watchdog.on_collective(event);
  EXPECT_TRUE(watchdog.armed().empty());

  event.group_seq = 6;
  event.phase = Phase::kGenerator;
  event.state = CollectiveState::kStarted;
  watchdog.on_collective(event);
  clock.advance(milliseconds(100));
  EXPECT_TRUE(watchdog.check_now());
  ASSERT_EQ(firings.seen.size(), 1u);
  EXPECT_EQ(firings.seen[0].expired.group_seq, 6u);
}

TEST(Watchdog, FailedCollectiveDisarmsOnlyItsOwnSlot) {
  FakeClock clock;
  Firings firings;
  Watchdog watchdog(fast_options(), firings.sink(), clock);
  watchdog.arm_for(milliseconds(50), "channel_wait", "boundary");
  CollectiveEvent event;
  event.group = "mesh";
  event.group_seq = 9;
  event.state = CollectiveState::kStarted;
  watchdog.on_collective(event);
  event.state = CollectiveState::kFailed;
  watchdog.on_collective(event);
  const auto armed = watchdog.armed();
  ASSERT_EQ(armed.size(), 1u);
  EXPECT_EQ(armed[0].what, "channel_wait");
}

TEST(Watchdog, ExhaustedSlotsFireInsteadOfLeavingAWaitUnguarded) {
  FakeClock clock;
  Firings firings;
  Watchdog watchdog(fast_options(), firings.sink(), clock);
  for (std::size_t i = 0; i < kWatchdogSlotsMax; ++i) watchdog.arm("wait");
  const auto overflow = watchdog.arm("one_more");
  EXPECT_EQ(overflow.slot, Watchdog::Ticket::kNoSlot);
  EXPECT_TRUE(watchdog.check_now());
  ASSERT_EQ(firings.seen.size(), 1u);
  EXPECT_EQ(firings.seen[0].cause, WatchdogCause::kSlotsExhausted);
  EXPECT_EQ(firings.seen[0].code, ErrorCode::kLimit);
}

TEST(Watchdog, PeerPoisonFiresNamingThePeerAtThePollPeriod) {
  FakeClock clock;
  MemoryStore store;
  Firings firings;
  WatchdogOptions options = fast_options();
  options.store = &store;
  options.rank = 0;
  options.world_size = 3;
  options.poison_poll_period = milliseconds(50);
  Watchdog watchdog(options, firings.sink(), clock);
  EXPECT_FALSE(watchdog.check_now());
  const int checks_after_first_poll = store.checks();
  EXPECT_EQ(checks_after_first_poll, 2);  // one per peer
  raise_poison(store, PoisonMark{2, "timeout", "all_reduce on mesh"});
  clock.advance(milliseconds(49));
  EXPECT_FALSE(watchdog.check_now());
  EXPECT_EQ(store.checks(), checks_after_first_poll);
  clock.advance(milliseconds(1));
  EXPECT_TRUE(watchdog.check_now());
  ASSERT_EQ(firings.seen.size(), 1u);
  EXPECT_EQ(firings.seen[0].cause, WatchdogCause::kPeerPoison);
  EXPECT_EQ(firings.seen[0].code, ErrorCode::kPeerFailure);
  EXPECT_EQ(firings.seen[0].peer_rank, 2);
  EXPECT_NE(firings.seen[0].message.find("all_reduce on mesh"), std::string::npos);
}

TEST(Watchdog, OwnPoisonMarkIsNotAPeer) {
  FakeClock clock;
  MemoryStore store;
  Firings firings;
  WatchdogOptions options = fast_options();
  options.store = &store;
  options.rank = 1;
  options.world_size = 2;
  Watchdog watchdog(options, firings.sink(), clock);
  raise_poison(store, PoisonMark{1, "timeout", "mine"});
  EXPECT_FALSE(watchdog.check_now());
}

TEST(Watchdog, ParentThatIsNoLongerOurParentIsFatal) {
  FakeClock clock;
  Firings firings;
  WatchdogOptions options = fast_options();
  options.parent_pid = getppid();
  Watchdog alive(options, firings.sink(), clock);
  EXPECT_FALSE(alive.check_now());
  options.parent_pid = getpid();  // not our parent: as if we had been re-parented
  Watchdog orphaned(options, firings.sink(), clock);
  EXPECT_TRUE(orphaned.check_now());
  ASSERT_EQ(firings.seen.size(), 1u);
  EXPECT_EQ(firings.seen[0].cause, WatchdogCause::kParentGone);
  EXPECT_EQ(firings.seen[0].code, ErrorCode::kPeerFailure);
}

class BrokenStore final : public Store {
 public:
  void set(const std::string&, const Bytes&) override { fail(); }
  Bytes get(const std::string&, std::chrono::milliseconds) override { fail(); }
  bool check(const std::vector<std::string>&) override { fail(); }
  std::string describe() const override { return "broken"; }

 private:
  [[noreturn]] static void fail() { throw Error(ErrorCode::kStore, "store directory vanished"); }
};

TEST(Watchdog, StoreThatFailsWhilePollingIsFatalNotIgnored) {
  FakeClock clock;
  BrokenStore store;
  Firings firings;
  WatchdogOptions options = fast_options();
  options.store = &store;
  options.world_size = 2;
  Watchdog watchdog(options, firings.sink(), clock);
  EXPECT_TRUE(watchdog.check_now());
  ASSERT_EQ(firings.seen.size(), 1u);
  EXPECT_EQ(firings.seen[0].cause, WatchdogCause::kStoreFailed);
  EXPECT_EQ(firings.seen[0].code, ErrorCode::kStore);
  EXPECT_NE(firings.seen[0].message.find("vanished"), std::string::npos);
}

TEST(Watchdog, RejectsNonsenseOptions) {
  FakeClock clock;
  Firings firings;
  WatchdogOptions options = fast_options();
  options.steady_deadline = milliseconds(0);
  EXPECT_THROW(Watchdog(options, firings.sink(), clock), Error);
  options = fast_options();
  options.rank = 3;
  options.world_size = 3;
  EXPECT_THROW(Watchdog(options, firings.sink(), clock), Error);
}

TEST(Watchdog, ThreadFiresWithTheRealClock) {
  std::promise<WatchdogFiring> fired;
  WatchdogOptions options = fast_options();
  options.check_period = milliseconds(2);
  Watchdog watchdog(options, [&](const WatchdogFiring& f) { fired.set_value(f); });
  watchdog.start();
  const auto start = std::chrono::steady_clock::now();
  watchdog.arm_for(milliseconds(20), "recv", "boundary", 3);
  auto future = fired.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, milliseconds(20));
  EXPECT_EQ(future.get().expired.what, "recv");
  watchdog.stop();
}

TEST(WatchdogScope, DisarmsOnScopeExit) {
  FakeClock clock;
  Firings firings;
  Watchdog watchdog(fast_options(), firings.sink(), clock);
  {
    WatchdogScope scope(watchdog, milliseconds(10), "drain");
    EXPECT_EQ(watchdog.armed().size(), 1u);
  }
  clock.advance(milliseconds(100));
  EXPECT_FALSE(watchdog.check_now());
}

}  // namespace
}  // namespace lockstep
