// Threads sharing comm objects (label concurrency; CI runs it under TSan):
// the shm ring with writer and readers in threads of one process sharing one
// mapping, cancel waking blocked waiters, and the single-owner rule.
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include "comm/recording_backend.h"
#include "comm/shm_test_util.h"
#include "lockstep/communicator.h"
#include "lockstep/shm_ring.h"
#include "lockstep/single_owner.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
using test::code_of;
constexpr milliseconds kTimeout{10000};
// Bound on a thread the test waits for; far above the expected microseconds.
constexpr std::chrono::seconds kJoinBound{10};

// Frames through a ring with `readers` reader threads; every reader checks
// every frame's bytes, which would differ had a slot been reused too early.
void run_fan_out(int readers, std::uint32_t slots, std::uint64_t frames) {
  constexpr std::size_t kPayloadBytes = 256;
  ShmRing ring = ShmRing::create(test::unique_ring_options(readers, slots, kPayloadBytes));
  auto writer = ring.writer();
  std::vector<std::future<std::uint64_t>> received;
  for (int r = 0; r < readers; ++r) {
    received.push_back(std::async(std::launch::async, [&ring, r, frames] {
      auto reader = ring.reader(r);
      std::vector<std::uint8_t> buffer(kPayloadBytes);
      std::uint64_t good = 0;
      for (std::uint64_t n = 0; n < frames; ++n) {
        const std::size_t size = reader->receive(buffer, kTimeout);
        const auto expected = test::pattern_frame(n, kPayloadBytes);
        if (std::equal(expected.begin(), expected.end(), buffer.begin(), buffer.begin() + size) &&
            size == expected.size()) {
          ++good;
        }
      }
      return good;
    }));
  }
  for (std::uint64_t n = 0; n < frames; ++n) writer->publish(test::pattern_frame(n, kPayloadBytes), kTimeout);
  for (auto& result : received) {
    ASSERT_EQ(result.wait_for(kJoinBound), std::future_status::ready);
    EXPECT_EQ(result.get(), frames);
  }
}

TEST(ShmRingThreads, FanOutToOneTwoAndEightReaders) {
  run_fan_out(1, 1, 500);
  run_fan_out(2, 4, 500);
  run_fan_out(kShmRingReadersMax, 8, 300);
}

TEST(ShmRingThreads, SlowReaderHoldsWriterAtTheBound) {
  constexpr std::uint32_t kSlots = 3;
  constexpr std::uint64_t kFrames = 200;
  ShmRing ring = ShmRing::create(test::unique_ring_options(2, kSlots, 64));
  auto writer = ring.writer();
  std::atomic<std::uint64_t> published{0};  // frames whose publish() returned
  auto fast = std::async(std::launch::async, [&] {
    auto reader = ring.reader(0);
    std::vector<std::uint8_t> buffer(64);
    for (std::uint64_t n = 0; n < kFrames; ++n) reader->receive(buffer, kTimeout);
  });
  auto slow = std::async(std::launch::async, [&] {
    auto reader = ring.reader(1);
    std::vector<std::uint8_t> buffer(64);
    // Before this reader acks anything the writer must fill the ring and stop
    // there, however long it is given.
    const auto gate_deadline = std::chrono::steady_clock::now() + kJoinBound;
    while (published.load(std::memory_order_acquire) < kSlots &&
           std::chrono::steady_clock::now() < gate_deadline) {
      std::this_thread::yield();
    }
    for (int i = 0; i < 1000; ++i) std::this_thread::yield();
    std::uint64_t max_ahead = published.load(std::memory_order_acquire);
    for (std::uint64_t n = 0; n < kFrames; ++n) {
      reader->receive(buffer, kTimeout);
      // Having acked n + 1 frames, the writer can have finished at most
      // n + 1 + kSlots publishes, however long this reader dawdles.
      for (int i = 0; i < 200; ++i) std::this_thread::yield();
      // `published` trails the writer's publish() by one store, so it may not
      // yet count frame n + 1 that this reader already received: then the
      // writer is not ahead at all (and the subtraction must not wrap).
      const std::uint64_t done = published.load(std::memory_order_acquire);
      max_ahead = std::max(max_ahead, done > n + 1 ? done - (n + 1) : 0);
    }
    return max_ahead;
  });
  for (std::uint64_t n = 0; n < kFrames; ++n) {
    writer->publish(test::pattern_frame(n, 64), kTimeout);
    published.store(n + 1, std::memory_order_release);
  }
  ASSERT_EQ(fast.wait_for(kJoinBound), std::future_status::ready);
  ASSERT_EQ(slow.wait_for(kJoinBound), std::future_status::ready);
  fast.get();
  EXPECT_EQ(slow.get(), kSlots) << "the writer must reach the bound and never pass it";
}

TEST(ShmRingThreads, CancelWakesABlockedReaderAndWriter) {
  ShmRing ring = ShmRing::create(test::unique_ring_options(1, 1, 64));
  auto writer = ring.writer();
  auto reader = ring.reader(0);
  std::atomic<int> entered{0};
  auto blocked_writer = std::async(std::launch::async, [&] {
    writer->publish(test::pattern_frame(0, 64), kTimeout);  // the ring is now full
    entered.fetch_add(1);
    return code_of([&] { writer->publish(test::pattern_frame(1, 64), kTimeout); });
  });
  ShmRing second = ShmRing::create(test::unique_ring_options(1, 1, 64));
  auto idle_writer = second.writer();
  auto idle_reader = second.reader(0);
  auto blocked_reader = std::async(std::launch::async, [&] {
    entered.fetch_add(1);
    std::vector<std::uint8_t> buffer(64);
    return code_of([&] { idle_reader->receive(buffer, kTimeout); });
  });
  while (entered.load() < 2) std::this_thread::yield();
  reader->cancel();
  idle_writer->cancel();
  ASSERT_EQ(blocked_writer.wait_for(kJoinBound), std::future_status::ready);
  ASSERT_EQ(blocked_reader.wait_for(kJoinBound), std::future_status::ready);
  EXPECT_EQ(blocked_writer.get(), ErrorCode::kAborted);
  EXPECT_EQ(blocked_reader.get(), ErrorCode::kAborted);
}

// Runs fn on a thread named `name` and returns what it threw.
std::string error_from_thread(const char* name, const std::function<void()>& fn) {
  std::string message = "nothing thrown";
  std::thread intruder([&] {
    pthread_setname_np(pthread_self(), name);
    try {
      fn();
    } catch (const Error& error) {
      message = std::string(error_code_name(error.code())) + "|" + error.what();
    }
  });
  intruder.join();
  return message;
}

TEST(SingleOwnerThreads, SecondThreadIsRefusedNamingBothThreads) {  // A6
  pthread_setname_np(pthread_self(), "comm-owner");
  ShmRing ring = ShmRing::create(test::unique_ring_options(1, 2, 64));
  auto writer = ring.writer();
  writer->publish(test::pattern_frame(0, 64), kTimeout);  // binds the owner
  const std::string message =
      error_from_thread("intruder", [&] { writer->publish(test::pattern_frame(1, 64), kTimeout); });
  EXPECT_EQ(message.rfind("ownership|", 0), 0u) << message;
  EXPECT_NE(message.find("'comm-owner'"), std::string::npos) << message;
  EXPECT_NE(message.find("'intruder'"), std::string::npos) << message;
  EXPECT_NE(message.find("writer"), std::string::npos) << message;
  writer->publish(test::pattern_frame(1, 64), kTimeout);  // the owner is unaffected
}

TEST(SingleOwnerThreads, ExplicitBindCatchesAStrayFirstUse) {
  pthread_setname_np(pthread_self(), "comm-owner");
  SingleOwner owner("thing");
  EXPECT_FALSE(owner.bound());
  owner.bind_to_current_thread();
  EXPECT_TRUE(owner.bound());
  owner.check();
  const std::string message = error_from_thread("stray", [&] { owner.check(); });
  EXPECT_NE(message.find("thing is owned by thread tid"), std::string::npos) << message;
  EXPECT_NE(message.find("'stray'"), std::string::npos) << message;
  EXPECT_EQ(error_from_thread("stray", [&] { owner.bind_to_current_thread(); }).rfind("ownership|", 0), 0u);
}

TEST(SingleOwnerThreads, CommunicatorRefusesSecondThreadButAbortIsAnyThread) {
  test::RecordingFactory factory;
  test::UnusedStore store;
  CommunicatorOptions options;
  options.global_rank = 1;
  options.groups = make_standard_group_table(Topology::kPp1, 3);
  Communicator comm(std::move(options), factory, store, nullptr);
  comm.bind_owner_thread();
  const std::string message = error_from_thread("decode", [&] { comm.barrier("mesh", kTimeout); });
  EXPECT_EQ(message.rfind("ownership|", 0), 0u) << message;
  EXPECT_TRUE(factory.log.empty());
  std::thread watchdog([&] { comm.abort(); });
  watchdog.join();
  EXPECT_TRUE(comm.aborted());
  EXPECT_EQ(code_of([&] { comm.barrier("mesh", kTimeout); }), ErrorCode::kAborted);
}

}  // namespace
}  // namespace lockstep
