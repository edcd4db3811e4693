#include "lockstep/acceptance.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "lockstep/error.h"
#include "support/error_of.h"

namespace lockstep {
namespace {

using test::error_of;

std::vector<std::uint64_t> ids(const std::vector<ResultAcceptance<std::string>::Released>& released) {
  std::vector<std::uint64_t> out;
  for (const auto& r : released) out.push_back(r.call_id);
  return out;
}

TEST(ResultAcceptance, AcceptsInOrderAndSkipsNoopGaps) {
  ResultAcceptance<std::string> acceptance(0, 4);
  for (std::uint64_t id : {1, 2, 5, 6}) acceptance.expect(id);  // 3, 4 were NOOPs
  EXPECT_EQ(ids(acceptance.offer(1, 0, "a")), std::vector<std::uint64_t>{1});
  EXPECT_EQ(ids(acceptance.offer(2, 0, "b")), std::vector<std::uint64_t>{2});
  const auto released = acceptance.offer(5, 0, "c");
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0].result, "c");
  EXPECT_EQ(acceptance.rule().next_expected(), 6u);
  EXPECT_EQ(acceptance.rule().counters().accepted, 3u);
}

TEST(ResultAcceptance, BuffersInsideWindowAndReleasesInOrderOnce) {
  ResultAcceptance<std::string> acceptance(0, 3);
  for (std::uint64_t id = 10; id < 14; ++id) acceptance.expect(id);
  EXPECT_TRUE(acceptance.offer(12, 0, "12").empty());
  EXPECT_TRUE(acceptance.offer(11, 0, "11").empty());
  const auto released = acceptance.offer(10, 0, "10");
  ASSERT_EQ(ids(released), (std::vector<std::uint64_t>{10, 11, 12}));
  EXPECT_EQ(released[1].result, "11");
  EXPECT_EQ(released[2].result, "12");
  const AcceptanceCounters& counters = acceptance.rule().counters();
  EXPECT_EQ(counters.reordered, 2u);
  EXPECT_EQ(counters.accepted, 3u);
  EXPECT_EQ(acceptance.rule().buffered(), 0u);
  EXPECT_EQ(ids(acceptance.offer(13, 0, "13")), std::vector<std::uint64_t>{13});
}

TEST(ResultAcceptance, BeyondWindowIsFatalAndChangesNothing) {
  ResultAcceptance<std::string> acceptance(0, 2);
  for (std::uint64_t id = 1; id <= 3; ++id) acceptance.expect(id);
  const Error error = error_of([&] { acceptance.offer(3, 0, "x"); });
  EXPECT_EQ(error.code(), ErrorCode::kStaleWork);
  EXPECT_NE(std::string(error.what()).find("reorder window"), std::string::npos);
  EXPECT_EQ(acceptance.rule().buffered(), 0u);
  EXPECT_EQ(ids(acceptance.offer(1, 0, "1")), std::vector<std::uint64_t>{1});
  EXPECT_TRUE(acceptance.offer(3, 0, "3").empty());  // now inside the window
}

TEST(ResultAcceptance, WindowOfOneAllowsNoReordering) {
  AcceptanceRule rule(0, 1);
  rule.expect(1);
  rule.expect(2);
  EXPECT_EQ(error_of([&] { rule.offer(2, 0); }).code(), ErrorCode::kStaleWork);
}

TEST(ResultAcceptance, DuplicatesOfReleasedAndBufferedAreDroppedAndCounted) {
  ResultAcceptance<std::string> acceptance(0, 4);
  for (std::uint64_t id = 1; id <= 3; ++id) acceptance.expect(id);
  acceptance.offer(1, 0, "first");
  EXPECT_TRUE(acceptance.offer(1, 0, "again").empty());
  EXPECT_TRUE(acceptance.offer(3, 0, "3").empty());
  EXPECT_TRUE(acceptance.offer(3, 0, "3 again").empty());
  const auto released = acceptance.offer(2, 0, "2");
  ASSERT_EQ(ids(released), (std::vector<std::uint64_t>{2, 3}));
  EXPECT_EQ(released[1].result, "3");  // the first copy wins
  EXPECT_EQ(acceptance.rule().counters().duplicate_drops, 2u);
  EXPECT_EQ(acceptance.rule().counters().accepted, 3u);
}

TEST(ResultAcceptance, OldIdBeyondDuplicateHistoryIsRegression) {
  AcceptanceRule rule(0, 1);
  for (std::uint64_t id = 0; id <= kDuplicateHistoryMax; ++id) {
    rule.expect(id);
    rule.offer(id, 0);
  }
  EXPECT_EQ(rule.offer(kDuplicateHistoryMax, 0).verdict, ResultVerdict::kDuplicate);
  EXPECT_EQ(rule.offer(1, 0).verdict, ResultVerdict::kDuplicate);
  const Error error = error_of([&] { rule.offer(0, 0); });
  EXPECT_EQ(error.code(), ErrorCode::kStaleWork);
  EXPECT_NE(std::string(error.what()).find("regresses"), std::string::npos);
}

TEST(ResultAcceptance, ResultForUnsentOrNoopIdIsFatal) {
  AcceptanceRule rule(0, 4);
  rule.expect(1);
  rule.expect(3);
  EXPECT_EQ(error_of([&] { rule.offer(2, 0); }).code(), ErrorCode::kStaleWork);  // NOOP id
  EXPECT_EQ(error_of([&] { rule.offer(9, 0); }).code(), ErrorCode::kStaleWork);  // never sent
  EXPECT_EQ(rule.counters().accepted, 0u);
  EXPECT_EQ(rule.offer(1, 0).verdict, ResultVerdict::kAccepted);
}

TEST(ResultAcceptance, FutureEpochIsFatal) {
  AcceptanceRule rule(2, 4);
  rule.expect(1);
  const Error error = error_of([&] { rule.offer(1, 3); });
  EXPECT_EQ(error.code(), ErrorCode::kStaleWork);
  EXPECT_NE(std::string(error.what()).find("future epoch"), std::string::npos);
}

TEST(ResultAcceptance, HardCutMakesInFlightStaleAndTracksTheDrain) {
  ResultAcceptance<std::string> acceptance(0, 4);
  for (std::uint64_t id = 1; id <= 4; ++id) acceptance.expect(id);
  acceptance.offer(1, 0, "1");
  EXPECT_TRUE(acceptance.offer(3, 0, "3").empty());  // buffered, then abandoned
  acceptance.begin_epoch(1);
  const AcceptanceRule& rule = acceptance.rule();
  EXPECT_EQ(rule.cache_epoch(), 1u);
  EXPECT_EQ(rule.counters().discarded_in_flight, 3u);  // 2, 3, 4
  EXPECT_EQ(rule.abandoned_pending(), 2u);             // 2 and 4 are still to arrive
  EXPECT_FALSE(rule.drained());
  acceptance.expect(5);
  EXPECT_TRUE(acceptance.offer(2, 0, "2").empty());
  EXPECT_TRUE(acceptance.offer(3, 0, "3 dup").empty());
  EXPECT_FALSE(rule.drained());
  EXPECT_TRUE(acceptance.offer(4, 0, "4").empty());
  EXPECT_TRUE(rule.drained());
  EXPECT_EQ(rule.counters().stale_drops, 3u);
  EXPECT_EQ(ids(acceptance.offer(5, 1, "5")), std::vector<std::uint64_t>{5});
  EXPECT_EQ(rule.counters().accepted, 2u);  // 3 was never released
}

TEST(ResultAcceptance, IdsKeepIncreasingAcrossEpochs) {
  AcceptanceRule rule(0, 4);
  rule.expect(1);
  rule.expect(2);
  rule.offer(1, 0);
  rule.begin_epoch(1);
  EXPECT_EQ(error_of([&] { rule.expect(2); }).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_of([&] { rule.offer(1, 1); }).code(), ErrorCode::kStaleWork);  // old id, new epoch
  EXPECT_EQ(error_of([&] { rule.offer(2, 1); }).code(), ErrorCode::kStaleWork);  // not awaited in epoch 1
  rule.expect(3);
  EXPECT_EQ(rule.offer(3, 1).verdict, ResultVerdict::kAccepted);
}

TEST(ResultAcceptance, RejectsBadConfigurationAndOverload) {
  EXPECT_EQ(error_of([] { AcceptanceRule rule(0, 0); }).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_of([] { AcceptanceRule rule(0, kReorderWindowMax + 1); }).code(), ErrorCode::kInvalidArgument);
  AcceptanceRule rule(5, 4);
  EXPECT_EQ(error_of([&] { rule.begin_epoch(5); }).code(), ErrorCode::kInvalidArgument);
  for (std::uint64_t id = 0; id < kAwaitedResultsMax; ++id) rule.expect(id);
  EXPECT_EQ(error_of([&] { rule.expect(kAwaitedResultsMax); }).code(), ErrorCode::kLimit);
  EXPECT_EQ(error_of([&] { rule.expect(3); }).code(), ErrorCode::kInvalidArgument);
}

// A mesh that answers with bounded reordering and random resends, across hard
// cuts: every result of the live epoch is released exactly once, in order.
TEST(ResultAcceptance, RandomisedReorderDuplicateAndCutsReleaseExactlyOnceInOrder) {
  std::mt19937_64 random(42);
  constexpr std::size_t kWindow = 4;
  AcceptanceRule rule(0, kWindow);
  std::uint64_t next_id = 0;
  std::vector<std::uint64_t> released;
  std::vector<std::uint64_t> expected;
  for (std::uint64_t epoch = 0; epoch < 5; ++epoch) {
    if (epoch > 0) rule.begin_epoch(epoch);
    std::vector<std::uint64_t> sent;
    for (int i = 0; i < 40; ++i) {
      next_id += 1 + random() % 2;  // NOOP gaps
      sent.push_back(next_id);
    }
    // Deliver in windows of kWindow with shuffled order and duplicates.
    for (std::size_t base = 0; base < sent.size(); base += kWindow) {
      std::vector<std::uint64_t> batch(sent.begin() + static_cast<std::ptrdiff_t>(base),
                                       sent.begin() + static_cast<std::ptrdiff_t>(base + kWindow));
      for (std::uint64_t id : batch) rule.expect(id);
      std::shuffle(batch.begin(), batch.end(), random);
      if (random() % 2 == 0) batch.push_back(batch[random() % batch.size()]);
      for (std::uint64_t id : batch) {
        for (std::uint64_t r : rule.offer(id, epoch).released) released.push_back(r);
      }
    }
    expected.insert(expected.end(), sent.begin(), sent.end());
  }
  EXPECT_EQ(released, expected);
  EXPECT_EQ(rule.counters().accepted, expected.size());
}

TEST(EnvelopeSequencer, AppliesStrictlyIncreasingStreamWithNoops) {
  EnvelopeSequencer sequencer(1, 0, 0);
  EXPECT_EQ(sequencer.admit({1, 0, 0, 11}).verdict, EnvelopeVerdict::kApply);
  EXPECT_EQ(sequencer.admit({2, 0, std::nullopt, 12}).verdict, EnvelopeVerdict::kApply);  // NOOP
  EXPECT_EQ(sequencer.admit({3, 0, 1, 13}).verdict, EnvelopeVerdict::kApply);
  const auto cut = sequencer.admit({4, 1, 2, 14});
  EXPECT_EQ(cut.verdict, EnvelopeVerdict::kApply);
  EXPECT_TRUE(cut.epoch_changed);
  EXPECT_FALSE(sequencer.admit({5, 1, 3, 15}).epoch_changed);
  EXPECT_EQ(sequencer.applied(), 5u);
  EXPECT_EQ(sequencer.last_call_id(), 5u);
  EXPECT_EQ(sequencer.cache_epoch(), 1u);
}

TEST(EnvelopeSequencer, IdenticalResendIsDroppedAndCounted) {
  EnvelopeSequencer sequencer(0, 0, 0);
  sequencer.admit({0, 0, 0, 99});
  const auto again = sequencer.admit({0, 0, 0, 99});
  EXPECT_EQ(again.verdict, EnvelopeVerdict::kDuplicate);
  EXPECT_EQ(sequencer.duplicate_drops(), 1u);
  EXPECT_EQ(sequencer.applied(), 1u);
  EXPECT_EQ(sequencer.admit({1, 0, 1, 100}).verdict, EnvelopeVerdict::kApply);
}

TEST(EnvelopeSequencer, EveryViolationIsFatalAndChangesNothing) {
  EnvelopeSequencer sequencer(0, 0, 3);
  EXPECT_EQ(error_of([&] { sequencer.admit({1, 3, 0, 0}); }).code(), ErrorCode::kStaleWork);  // wrong first id
  sequencer.admit({0, 3, 0, 7});
  sequencer.admit({1, 3, 1, 8});
  const std::vector<EnvelopeIds> bad = {
      {1, 3, 1, 9},             // resend with different content
      {1, 4, 1, 8},             // resend with a different epoch
      {0, 3, 0, 7},             // call_id goes backwards (not the last one)
      {3, 3, 2, 1},             // gap
      {2, 2, 2, 1},             // epoch goes backwards
      {2, 3, 3, 1},             // chunk_index skips
      {2, 3, 1, 1},             // chunk_index repeats
  };
  for (const EnvelopeIds& ids : bad) {
    EXPECT_FALSE(sequencer.would_apply(ids)) << ids.call_id;
    EXPECT_EQ(error_of([&] { sequencer.admit(ids); }).code(), ErrorCode::kStaleWork) << ids.call_id;
  }
  EXPECT_FALSE(sequencer.would_apply({1, 3, 1, 8})) << "an identical resend is dropped, not applied";
  EXPECT_EQ(sequencer.applied(), 2u);
  EXPECT_EQ(sequencer.duplicate_drops(), 0u);
  EXPECT_TRUE(sequencer.would_apply({2, 3, 2, 1}));
  EXPECT_EQ(sequencer.admit({2, 3, 2, 1}).verdict, EnvelopeVerdict::kApply);
}

}  // namespace
}  // namespace lockstep
