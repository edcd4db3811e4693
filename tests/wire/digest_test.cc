#include "lockstep/digest.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>

#include <vector>

namespace lockstep {
namespace {

TEST(Digest, MatchesXxh3ReferenceValueOfEmptyInput) {
  // XXH3-64 of zero bytes, seed 0, from the xxHash reference: pins the algorithm.
  EXPECT_EQ(digest_bytes(nullptr, 0), 0x2D06800538D394C2ull);
  EXPECT_EQ(digest_string(""), 0x2D06800538D394C2ull);
}

TEST(Digest, HexIsSixteenLowercaseDigitsAndRoundTrips) {
  EXPECT_EQ(digest_hex(0xDEADBEEFull), "00000000deadbeef");
  EXPECT_EQ(digest_hex(~0ull), "ffffffffffffffff");
  EXPECT_EQ(digest_from_hex("00000000DEADBEEF"), 0xDEADBEEFull);
  const std::uint64_t d = digest_string("lockstep");
  EXPECT_EQ(digest_from_hex(digest_hex(d)), d);
  EXPECT_FALSE(digest_from_hex("deadbeef"));
  EXPECT_FALSE(digest_from_hex("00000000deadbeeg"));
  EXPECT_FALSE(digest_from_hex("00000000deadbeef0"));
}

TEST(Digest, CombineIsOrderSensitive) {
  const std::uint64_t a = digest_string("a");
  const std::uint64_t b = digest_string("b");
  EXPECT_NE(digest_combine(digest_combine(0, a), b), digest_combine(digest_combine(0, b), a));
  EXPECT_EQ(digest_combine(a, b), digest_combine(a, b));
}

// The tensor digest is its blockwise definition (what the GPU computes):
// each block's XXH64 seeded by its index, folded in order with the size.
TEST(Digest, TensorDigestFoldsBlockDigestsInOrder) {
  std::vector<std::uint8_t> bytes(3 * kTensorDigestBlockBytes + 100);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>((i * 2654435761ull) >> 11);
  std::vector<std::uint64_t> blocks;
  for (std::size_t offset = 0, block = 0; offset < bytes.size(); offset += kTensorDigestBlockBytes, ++block) {
    blocks.push_back(XXH64(bytes.data() + offset, std::min(kTensorDigestBlockBytes, bytes.size() - offset), block));
  }
  const std::uint64_t whole = digest_tensor(bytes.data(), bytes.size());
  EXPECT_EQ(whole, digest_tensor_blocks(blocks, bytes.size()));
  EXPECT_NE(whole, digest_tensor(bytes.data(), bytes.size() - 1));  // the size is folded in
  bytes[2 * kTensorDigestBlockBytes + 5] ^= 1;
  EXPECT_NE(whole, digest_tensor(bytes.data(), bytes.size()));  // every block counts
  bytes[2 * kTensorDigestBlockBytes + 5] ^= 1;
  // Swapping two blocks changes it: the fold is ordered and seeds are per block.
  std::vector<std::uint8_t> swapped(bytes);
  std::swap_ranges(swapped.begin(), swapped.begin() + kTensorDigestBlockBytes,
                   swapped.begin() + kTensorDigestBlockBytes);
  EXPECT_NE(whole, digest_tensor(swapped.data(), swapped.size()));
  EXPECT_EQ(digest_tensor(nullptr, 0), digest_tensor_blocks({}, 0));
}

TEST(Digest, StreamEqualsOneShotOfConcatenation) {
  std::vector<std::uint8_t> bytes(1000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 7);
  DigestStream stream;
  stream.update(std::span(bytes).first(333));
  stream.update(std::span(bytes).subspan(333));
  EXPECT_EQ(stream.digest(), digest_bytes(bytes));

  DigestStream le;
  le.update_u64(0x0807060504030201ull);
  const std::vector<std::uint8_t> expected{1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(le.digest(), digest_bytes(expected));
}

TEST(Digest, JobTokenDigestIsDomainSeparated) {
  EXPECT_NE(job_token_digest("tok", 0), digest_string("tok"));
  EXPECT_NE(job_token_digest("tok", 0), job_token_digest("tok2", 0));
  EXPECT_EQ(job_token_digest("tok", 0), job_token_digest("tok", 0));
}

TEST(Digest, JobTokenDigestCarriesTheGenerationInItsLowBits) {
  const std::uint64_t g0 = job_token_digest("tok", 0);
  const std::uint64_t g7 = job_token_digest("tok", 7);
  EXPECT_EQ(g0 & kFrameGenerationMask, 0u);
  EXPECT_EQ(g7 & kFrameGenerationMask, 7u);
  EXPECT_EQ(g0 & ~kFrameGenerationMask, g7 & ~kFrameGenerationMask);
}

}  // namespace
}  // namespace lockstep
