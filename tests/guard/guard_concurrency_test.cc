// Recorder, watchdog and the warm fatal path under concurrent use (run under
// TSan in CI): appends from many threads while another thread snapshots and
// formats dumps, arm/disarm from many threads while the watchdog checks, and
// concurrent triggers of a fatal path that ends a generation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "guard/fakes.h"
#include "lockstep/fatal.h"
#include "lockstep/flight_recorder.h"
#include "lockstep/watchdog.h"

namespace lockstep {
namespace {

constexpr int kWriterThreads = 4;
constexpr std::int64_t kAppendsPerThread = 20'000;

// Every field of an event derives from (writer, i), so a torn entry — words
// from two appends — is detected.
std::string detail_for(std::int64_t count) { return "d" + std::to_string(count * 7); }

void expect_whole(const FlightEvent& e) {
  EXPECT_EQ(static_cast<std::int64_t>(e.group_seq), e.count);
  EXPECT_EQ(e.detail.view(), detail_for(e.count));
  EXPECT_EQ(e.peer, static_cast<std::int32_t>(e.count / kAppendsPerThread));
  EXPECT_EQ(e.op.view(), "w" + std::to_string(e.peer));
}

TEST(FlightRecorderConcurrency, SnapshotsNeverSeeTornOrReorderedEvents) {
  FlightRecorder recorder(256);
  std::atomic<bool> writers_done{false};
  std::atomic<int> snapshots{0};
  std::thread dumper([&] {
    while (!writers_done.load()) {
      const auto events = recorder.snapshot();
      for (std::size_t i = 0; i < events.size(); ++i) {
        expect_whole(events[i]);
        if (i > 0) {
          EXPECT_LT(events[i - 1].seq, events[i].seq);
        }
      }
      const std::string text = format_dump(DumpHeader{}, events, 0);
      EXPECT_FALSE(text.empty());
      snapshots.fetch_add(1);
    }
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriterThreads; ++w) {
    writers.emplace_back([&, w] {
      const std::string op = "w" + std::to_string(w);
      for (std::int64_t i = 0; i < kAppendsPerThread; ++i) {
        const std::int64_t count = w * kAppendsPerThread + i;
        const std::string detail = detail_for(count);
        EventSpec spec;
        spec.kind = EventKind::kCollective;
        spec.op = op;
        spec.detail = detail;
        spec.group_seq = static_cast<std::uint64_t>(count);
        spec.count = count;
        spec.peer = w;
        recorder.record(spec);
      }
    });
  }
  for (auto& t : writers) t.join();
  writers_done.store(true);
  dumper.join();
  EXPECT_GT(snapshots.load(), 0);
  EXPECT_EQ(recorder.appended_events(), static_cast<std::uint64_t>(kWriterThreads * kAppendsPerThread));
  // Quiescent: the ring holds exactly its newest complete entries.
  const auto final_events = recorder.snapshot();
  EXPECT_GE(final_events.size() + recorder.dropped_events(), 256u);
  for (const auto& e : final_events) expect_whole(e);
}

TEST(WatchdogConcurrency, ArmDisarmRacesWithChecksWithoutFalseExpiry) {
  test::FakeClock clock;
  std::atomic<int> fired{0};
  Watchdog watchdog(WatchdogOptions{}, [&](const WatchdogFiring&) { fired.fetch_add(1); }, clock);
  std::atomic<bool> done{false};
  std::thread checker([&] {
    while (!done.load()) {
      watchdog.check_now();
      EXPECT_LE(watchdog.armed().size(), kWatchdogSlotsMax);
    }
  });
  std::vector<std::thread> workers;
  for (int w = 0; w < kWriterThreads; ++w) {
    workers.emplace_back([&] {
      for (int i = 0; i < 20'000; ++i) {
        const auto ticket = watchdog.arm("queue_wait", "mesh", static_cast<std::uint64_t>(i));
        watchdog.disarm(ticket);
      }
    });
  }
  for (auto& t : workers) t.join();
  done.store(true);
  checker.join();
  EXPECT_EQ(fired.load(), 0);  // the fake clock never moved
  EXPECT_TRUE(watchdog.armed().empty());
  watchdog.arm_for(std::chrono::milliseconds(1), "last");
  clock.advance(std::chrono::milliseconds(1));
  EXPECT_TRUE(watchdog.check_now());
  EXPECT_EQ(fired.load(), 1);
}

// Warm recovery: every trigger returns (the first once dump and abort are
// done), the abort runs once, and the process can build the next
// generation's handler.
TEST(FatalPathConcurrency, ConcurrentTriggersOfAGenerationEndingPathAllReturnAfterOneAbort) {
  constexpr int kTriggers = 8;
  const std::filesystem::path job_dir =
      std::filesystem::path(::testing::TempDir()) / ("lockstep-warm-fatal-" + std::to_string(::getpid()));
  for (int generation = 0; generation < 2; ++generation) {
    FlightRecorder recorder(kFlightRecorderEventsMin);
    FatalOptions options{0, 1, "rank", job_dir, kHardExitDeadlineDefault, false, true};
    FatalHandler fatal(options, recorder, nullptr);
    std::atomic<int> aborts{0};
    fatal.set_abort_action([&aborts] { aborts.fetch_add(1); });
    std::vector<std::thread> triggers;
    for (int i = 0; i < kTriggers; ++i) {
      triggers.emplace_back([&fatal, i] {
        fatal.fail(Error(i % 2 == 0 ? ErrorCode::kTimeout : ErrorCode::kPeerFailure, "concurrent trigger"));
      });
    }
    for (std::thread& trigger : triggers) trigger.join();
    ASSERT_TRUE(fatal.await_fatal_path());
    EXPECT_TRUE(fatal.tripped());
    EXPECT_EQ(aborts.load(), 1);
    const ErrorCode cause = fatal.generation_cause().code;
    EXPECT_TRUE(cause == ErrorCode::kTimeout || cause == ErrorCode::kPeerFailure);
  }
  std::filesystem::remove_all(job_dir);
}

}  // namespace
}  // namespace lockstep
