#include "lockstep/bounded_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "lockstep/error.h"
#include "support/error_of.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kLong{10'000};   // never reached in a passing run
constexpr milliseconds kShort{20};      // a deadline that must expire

using test::code_of;

TEST(BoundedQueue, RejectsCapacityOutsideLimits) {
  EXPECT_EQ(code_of([] { BoundedQueue<int> q("d_in", 0); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([] { BoundedQueue<int> q("d_in", kQueueCapacityMax + 1); }), ErrorCode::kInvalidArgument);
  BoundedQueue<int> q("d_in", kQueueCapacityMax);
  EXPECT_EQ(q.capacity(), kQueueCapacityMax);
}

TEST(BoundedQueue, RejectsTimeoutsOutsideLimits) {
  BoundedQueue<int> q("d_out", 2);
  EXPECT_EQ(code_of([&] { q.push(1, milliseconds{0}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { q.pop(kQueueTimeoutMax + milliseconds{1}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(q.depth(), 0u);
}

TEST(BoundedQueue, FifoAndBoundOnNonBlockingCalls) {
  BoundedQueue<int> q("d_in", 2);
  int a = 1, b = 2, c = 3;
  EXPECT_TRUE(q.try_push(a));
  EXPECT_TRUE(q.try_push(b));
  EXPECT_FALSE(q.try_push(c));
  EXPECT_EQ(c, 3);  // untouched when refused
  EXPECT_EQ(q.depth(), 2u);
  EXPECT_EQ(q.high_water(), 2u);
  EXPECT_EQ(q.try_pop(), 1);
  EXPECT_EQ(q.pop(kLong), 2);
  EXPECT_EQ(q.try_pop(), std::nullopt);
  EXPECT_EQ(q.high_water(), 2u);
}

TEST(BoundedQueue, PushPastDeadlineThrowsTimeoutNamingQueue) {
  BoundedQueue<int> q("d_in", 1);
  q.push(1, kLong);
  try {
    q.push(2, kShort);
    FAIL() << "push into a full queue did not time out";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(error.what()).find("d_in"), std::string::npos);
    EXPECT_NE(std::string(error.what()).find("push"), std::string::npos);
  }
  EXPECT_EQ(q.depth(), 1u);
}

TEST(BoundedQueue, PopPastDeadlineThrowsTimeout) {
  BoundedQueue<int> q("d_out", 2);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(code_of([&] { q.pop(kShort); }), ErrorCode::kTimeout);
  EXPECT_GE(std::chrono::steady_clock::now() - start, kShort);
}

TEST(BoundedQueue, FlushReturnsContentsAndUnblocksProducer) {
  BoundedQueue<int> q("d_out", 2);
  q.push(1, kLong);
  q.push(2, kLong);
  std::thread producer([&] { q.push(3, kLong); });
  std::vector<int> drained;
  // The producer is blocked or about to be; every flush makes room, so it
  // completes within a bounded number of flushes.
  while (drained.size() < 3) {
    for (int value : q.flush()) drained.push_back(value);
    if (drained.size() < 3) std::this_thread::yield();
  }
  producer.join();
  EXPECT_EQ(drained, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(q.depth(), 0u);
}

TEST(BoundedQueue, CancelWakesEveryWaiterWithAborted) {
  BoundedQueue<int> empty("d_out", 1);
  BoundedQueue<int> full("d_in", 1);
  full.push(0, kLong);
  std::atomic<int> aborted{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.emplace_back([&] {
      if (code_of([&] { empty.pop(kLong); }) == ErrorCode::kAborted) ++aborted;
    });
    waiters.emplace_back([&] {
      if (code_of([&] { full.push(1, kLong); }) == ErrorCode::kAborted) ++aborted;
    });
  }
  const auto start = std::chrono::steady_clock::now();
  empty.cancel();
  full.cancel();
  for (auto& waiter : waiters) waiter.join();
  EXPECT_EQ(aborted.load(), 6);
  EXPECT_LT(std::chrono::steady_clock::now() - start, kLong / 2);
  int value = 7;
  EXPECT_EQ(code_of([&] { full.try_push(value); }), ErrorCode::kAborted);
  EXPECT_EQ(full.flush(), std::vector<int>{0});  // shutdown can still account for leftovers
  EXPECT_TRUE(full.cancelled());
}

TEST(BoundedQueue, ManyProducersAndConsumersDeliverEachItemOnceInProducerOrder) {
  constexpr int kProducers = 4;
  constexpr int kItemsPerProducer = 500;
  constexpr int kConsumers = 2;
  BoundedQueue<std::pair<int, int>> q("d_in", 2);
  std::vector<std::vector<std::pair<int, int>>> received(kConsumers);
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&q, p] {
      for (int i = 0; i < kItemsPerProducer; ++i) q.push({p, i}, kLong);
    });
  }
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&q, &received, c] {
      for (int i = 0; i < kProducers * kItemsPerProducer / kConsumers; ++i) received[c].push_back(q.pop(kLong));
    });
  }
  for (auto& thread : threads) thread.join();
  std::map<int, int> next_per_producer;
  for (const auto& items : received) {
    std::map<int, int> last_seen;
    for (const auto& [producer, index] : items) {
      // Each consumer sees a producer's items in increasing order.
      if (last_seen.contains(producer)) {
        EXPECT_GT(index, last_seen[producer]);
      }
      last_seen[producer] = index;
      ++next_per_producer[producer];
    }
  }
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(next_per_producer[p], kItemsPerProducer);
  EXPECT_LE(q.high_water(), 2u);
  EXPECT_EQ(q.depth(), 0u);
}

TEST(BoundedQueue, SlowConsumerHoldsQueueAtItsBound) {
  BoundedQueue<int> q("d_out", 3);
  constexpr int kItems = 200;
  std::thread producer([&] {
    for (int i = 0; i < kItems; ++i) q.push(i, kLong);
  });
  // Wait (bounded by the producer's own progress) until backpressure bites.
  while (q.depth() < q.capacity()) std::this_thread::yield();
  EXPECT_EQ(q.high_water(), 3u);
  for (int i = 0; i < kItems; ++i) EXPECT_EQ(q.pop(kLong), i);
  producer.join();
  EXPECT_EQ(q.high_water(), 3u);
}

}  // namespace
}  // namespace lockstep
