#include "lockstep/ledger.h"

#include <gtest/gtest.h>

#include "lockstep/error.h"

namespace lockstep {
namespace {

TEST(Ledger, AppendAssignsSequentialSeqsAndFoldsDigest) {
  Ledger ledger("mesh", 0);
  EXPECT_EQ(ledger.digest(), ledger_initial_digest());
  EXPECT_EQ(ledger.append(CollectiveOp::kAllReduce, DType::kF32, 1024, kNoRootOrPeer), 0u);
  EXPECT_EQ(ledger.append(CollectiveOp::kBroadcast, DType::kU8, 64, 0), 1u);
  EXPECT_EQ(ledger.next_seq(), 2u);
  std::uint64_t expected = ledger_initial_digest();
  expected = ledger_fold(expected, {0, CollectiveOp::kAllReduce, DType::kF32, 1024, kNoRootOrPeer}, 0);
  expected = ledger_fold(expected, {1, CollectiveOp::kBroadcast, DType::kU8, 64, 0}, 0);
  EXPECT_EQ(ledger.digest(), expected);
  const LedgerSnapshot snapshot = ledger.snapshot();
  EXPECT_EQ(snapshot.group, "mesh");
  EXPECT_EQ(snapshot.next_seq, 2u);
  EXPECT_EQ(snapshot.digest, expected);
  ASSERT_EQ(snapshot.recent.size(), 2u);
  EXPECT_EQ(snapshot.recent[1], (LedgerEntry{1, CollectiveOp::kBroadcast, DType::kU8, 64, 0}));
}

TEST(Ledger, DigestEncodingIsPinned) {
  // Ranks of different builds compare these digests: changing the encoding
  // must bump kLedgerDigestFormat and these golden values together.
  EXPECT_EQ(ledger_initial_digest(), 0x2fbc593564db792eULL);
  EXPECT_EQ(ledger_fold(ledger_initial_digest(), {0, CollectiveOp::kAllReduce, DType::kF32, 1024, kNoRootOrPeer}, 0),
            0xd4271947786077f8ULL);
}

TEST(Ledger, EveryFieldChangesTheDigest) {
  const LedgerEntry base{3, CollectiveOp::kAllReduce, DType::kF32, 1024, kNoRootOrPeer};
  const std::uint64_t seed = ledger_initial_digest();
  const std::uint64_t digest = ledger_fold(seed, base, 1);
  LedgerEntry changed = base;
  changed.seq = 4;
  EXPECT_NE(ledger_fold(seed, changed, 1), digest);
  changed = base;
  changed.op = CollectiveOp::kAllGather;
  EXPECT_NE(ledger_fold(seed, changed, 1), digest);
  changed = base;
  changed.dtype = DType::kBF16;
  EXPECT_NE(ledger_fold(seed, changed, 1), digest);
  changed = base;
  changed.count = 1025;
  EXPECT_NE(ledger_fold(seed, changed, 1), digest);
  changed = base;
  changed.op = CollectiveOp::kBroadcast;
  changed.root_or_peer = 0;
  const std::uint64_t root0 = ledger_fold(seed, changed, 1);
  changed.root_or_peer = 1;
  EXPECT_NE(ledger_fold(seed, changed, 1), root0);
  EXPECT_NE(ledger_fold(digest, base, 1), digest) << "the digest must roll";
}

TEST(Ledger, SendAndMatchingRecvFoldIdentically) {
  // Rank 0 sends to 1; rank 1 receives from 0: both ledgers must agree.
  Ledger sender("boundary", 0);
  Ledger receiver("boundary", 1);
  sender.append(CollectiveOp::kSend, DType::kU8, 16, 1);
  receiver.append(CollectiveOp::kRecv, DType::kU8, 16, 0);
  EXPECT_EQ(sender.digest(), receiver.digest());
  EXPECT_EQ(first_divergence(sender.snapshot(), receiver.snapshot()), std::nullopt);
  // The reverse direction is a different transfer.
  Ledger reversed("boundary", 1);
  reversed.append(CollectiveOp::kSend, DType::kU8, 16, 0);
  EXPECT_NE(sender.digest(), reversed.digest());
}

TEST(Ledger, RecentWindowIsBounded) {
  Ledger ledger("mesh", 0);
  const std::uint64_t total = kLedgerRecentEntriesMax + 10;
  for (std::uint64_t i = 0; i < total; ++i) ledger.append(CollectiveOp::kBarrier, DType::kU8, 0, kNoRootOrPeer);
  const LedgerSnapshot snapshot = ledger.snapshot();
  EXPECT_EQ(snapshot.next_seq, total);
  ASSERT_EQ(snapshot.recent.size(), kLedgerRecentEntriesMax);
  EXPECT_EQ(snapshot.recent.front().seq, 10u);
  EXPECT_EQ(snapshot.recent.back().seq, total - 1);
}

TEST(LedgerDivergence, NamesFirstDifferingEntry) {  // B4
  Ledger a("mesh", 0);
  Ledger b("mesh", 1);
  for (Ledger* ledger : {&a, &b}) ledger->append(CollectiveOp::kAllReduce, DType::kF32, 8, kNoRootOrPeer);
  a.append(CollectiveOp::kAllReduce, DType::kF32, 16, kNoRootOrPeer);
  b.append(CollectiveOp::kAllGather, DType::kF32, 16, kNoRootOrPeer);
  for (Ledger* ledger : {&a, &b}) ledger->append(CollectiveOp::kBarrier, DType::kU8, 0, kNoRootOrPeer);
  const auto divergence = first_divergence(a.snapshot(), b.snapshot());
  ASSERT_TRUE(divergence.has_value());
  EXPECT_EQ(divergence->seq, 1u);
  EXPECT_TRUE(divergence->named);
  EXPECT_EQ(divergence->a->op, CollectiveOp::kAllReduce);
  EXPECT_EQ(divergence->b->op, CollectiveOp::kAllGather);
  EXPECT_NE(divergence->description.find("group 'mesh'"), std::string::npos) << divergence->description;
  EXPECT_NE(divergence->description.find("seq 1 all_reduce f32 x16"), std::string::npos);
  EXPECT_NE(divergence->description.find("seq 1 all_gather f32 x16"), std::string::npos);
}

TEST(LedgerDivergence, ExtraCollectiveOnOneRank) {  // B4: a per-rank flag adds one call
  Ledger a("mesh", 0);
  Ledger b("mesh", 1);
  for (Ledger* ledger : {&a, &b}) ledger->append(CollectiveOp::kAllReduce, DType::kF32, 8, kNoRootOrPeer);
  b.append(CollectiveOp::kAllReduce, DType::kF32, 4, kNoRootOrPeer);
  const auto divergence = first_divergence(a.snapshot(), b.snapshot());
  ASSERT_TRUE(divergence.has_value());
  EXPECT_EQ(divergence->seq, 1u);
  EXPECT_FALSE(divergence->a.has_value());
  ASSERT_TRUE(divergence->b.has_value());
  EXPECT_EQ(divergence->b->count, 4u);
  EXPECT_NE(divergence->description.find("has no entry"), std::string::npos) << divergence->description;
}

TEST(LedgerDivergence, OlderThanWindowIsReportedUnnamed) {
  Ledger a("mesh", 0);
  Ledger b("mesh", 1);
  a.append(CollectiveOp::kAllReduce, DType::kF32, 1, kNoRootOrPeer);
  b.append(CollectiveOp::kAllReduce, DType::kF32, 2, kNoRootOrPeer);
  for (std::size_t i = 0; i < kLedgerRecentEntriesMax; ++i) {
    for (Ledger* ledger : {&a, &b}) ledger->append(CollectiveOp::kBarrier, DType::kU8, 0, kNoRootOrPeer);
  }
  const auto divergence = first_divergence(a.snapshot(), b.snapshot());
  ASSERT_TRUE(divergence.has_value());
  EXPECT_FALSE(divergence->named);
  EXPECT_EQ(divergence->seq, 1u);
  EXPECT_NE(divergence->description.find("earlier than the last"), std::string::npos);
}

TEST(LedgerDivergence, DifferentGroupsAreAnError) {
  Ledger a("mesh", 0);
  Ledger b("world", 0);
  try {
    first_divergence(a.snapshot(), b.snapshot());
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  }
}

TEST(Ledger, DescribeEntry) {
  EXPECT_EQ(describe_entry({7, CollectiveOp::kSend, DType::kU8, 4096, 1}), "seq 7 send u8 x4096 peer 1");
  EXPECT_EQ(describe_entry({2, CollectiveOp::kBroadcast, DType::kI64, 3, 0}), "seq 2 broadcast i64 x3 root 0");
  EXPECT_EQ(describe_entry({41, CollectiveOp::kAllReduce, DType::kF32, 1024, kNoRootOrPeer}),
            "seq 41 all_reduce f32 x1024");
}

}  // namespace
}  // namespace lockstep
