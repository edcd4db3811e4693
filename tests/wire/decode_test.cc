// The receiver's side: every way a frame on the wire can be wrong, each
// rejected with the right ErrorCode and a message naming the field.
#include <gtest/gtest.h>

#include <random>

#include "lockstep/envelope.h"
#include "lockstep/frame.h"
#include "lockstep/result.h"
#include "wire/bytes.h"
#include "wire/expect_error.h"
#include "wire/wire_fixtures.h"

namespace lockstep {
namespace {

using wire_detail::load_le;
using wire_detail::store_le;
using wire_test::expectations;
namespace fl = frame_layout;

class Decode : public ::testing::Test {
 protected:
  Decode() {
    const auto views = wire_test::infer_views(tensors_);
    frame_ = wire_test::to_vector(
        preflight_envelope(wire_test::infer_envelope(), views, wire_test::context()).frame());
  }
  // Overwrites a header field and reseals the header checksum, so the decoder
  // judges the field and not the checksum.
  void set_header_field(std::size_t offset, std::uint64_t value, int width) {
    store_le(frame_.data() + offset, value, width);
    wire_test::reseal_header(frame_);
  }
  void expect_rejected(ErrorCode code, const std::string& text, const FrameExpectations& expect = expectations()) {
    EXPECT_LOCKSTEP_ERROR(decode_envelope(frame_, expect), code, text);
  }
  wire_test::Tensors tensors_;
  std::vector<std::uint8_t> frame_;
};

TEST_F(Decode, HeaderLayoutIsPinned) {
  EXPECT_EQ(load_le(frame_.data() + fl::kMagic, 4), kFrameMagic);
  EXPECT_EQ(frame_[0], 'L');
  EXPECT_EQ(frame_[3], 'T');
  EXPECT_EQ(load_le(frame_.data() + fl::kVersion, 2), kProtocolVersionMax);
  EXPECT_EQ(frame_[fl::kKind], static_cast<std::uint8_t>(MessageKind::kEnvelope));
  EXPECT_EQ(frame_[fl::kAction], static_cast<std::uint8_t>(Action::kInfer));
  EXPECT_EQ(frame_[fl::kCallId], 17);  // little-endian: low byte first
  EXPECT_EQ(load_le(frame_.data() + fl::kCallId, 8), 17u);
  EXPECT_EQ(load_le(frame_.data() + fl::kChunkIndex, 8), 9u);
  EXPECT_EQ(load_le(frame_.data() + fl::kCacheEpoch, 8), 2u);
  EXPECT_EQ(load_le(frame_.data() + fl::kPlanId, 8), 41u);
  EXPECT_EQ(load_le(frame_.data() + fl::kJobTokenDigest, 8), job_token_digest(wire_test::kJobToken, 0));
  EXPECT_EQ(load_le(frame_.data() + fl::kBodyBytes, 4), frame_.size() - kHeaderBytes);
}

TEST_F(Decode, HeaderAloneDecidesWithoutTheBody) {
  const std::span<const std::uint8_t, kHeaderBytes> header(frame_.data(), kHeaderBytes);
  const FrameHeader decoded = decode_header(header, expectations());
  EXPECT_EQ(decoded.kind, MessageKind::kEnvelope);
  EXPECT_EQ(decoded.body_bytes, frame_.size() - kHeaderBytes);
  frame_[fl::kCallId] ^= 1;
  EXPECT_LOCKSTEP_ERROR(decode_header(header, expectations()), ErrorCode::kChecksum, "header checksum mismatch");
}

TEST_F(Decode, BadMagic) {
  frame_[1] = 'X';
  expect_rejected(ErrorCode::kDecode, "magic");
}

TEST_F(Decode, UnknownVersionOnTheWire) {
  set_header_field(fl::kVersion, kProtocolVersionMax + 1, 2);
  expect_rejected(ErrorCode::kVersion, "frame header version 3 is not supported");
  set_header_field(fl::kVersion, 0, 2);
  expect_rejected(ErrorCode::kVersion, "frame header version 0");
}

TEST_F(Decode, VersionOtherThanNegotiated) {
  expect_rejected(ErrorCode::kVersion, "differs from the negotiated version 1", expectations(1));
  EXPECT_NO_THROW(decode_envelope(frame_, expectations(0)));
}

TEST_F(Decode, TruncatedAtEveryLength) {
  for (std::size_t n = 0; n < frame_.size(); ++n) {
    const std::span<const std::uint8_t> prefix(frame_.data(), n);
    EXPECT_LOCKSTEP_ERROR(decode_envelope(prefix, expectations()), ErrorCode::kDecode, "frame is " + std::to_string(n));
  }
}

TEST_F(Decode, TrailingBytes) {
  frame_.push_back(0);
  expect_rejected(ErrorCode::kDecode, "truncated or trailing");
}

TEST_F(Decode, AnyFlippedHeaderBitFailsTheHeaderChecksum) {
  for (std::size_t i = fl::kVersion; i < kHeaderBytes; ++i) {
    for (int bit = 0; bit < 8; bit += 3) {
      frame_[i] ^= static_cast<std::uint8_t>(1u << bit);
      EXPECT_LOCKSTEP_ERROR(decode_envelope(frame_, expectations()), ErrorCode::kChecksum, "header checksum mismatch");
      frame_[i] ^= static_cast<std::uint8_t>(1u << bit);
    }
  }
}

TEST_F(Decode, AnyFlippedBodyByteFailsTheBodyChecksum) {  // A5
  for (std::size_t i = kHeaderBytes; i < frame_.size(); ++i) {
    frame_[i] ^= 0x40;
    EXPECT_LOCKSTEP_ERROR(decode_envelope(frame_, expectations()), ErrorCode::kChecksum, "body checksum mismatch");
    frame_[i] ^= 0x40;
  }
  EXPECT_NO_THROW(decode_envelope(frame_, expectations()));
}

TEST_F(Decode, HeaderLimitsAreCheckedBeforeTheBody) {
  const std::vector<std::uint8_t> original = frame_;
  set_header_field(fl::kBodyBytes, kBodyBytesMax + 1, 4);
  expect_rejected(ErrorCode::kLimit, "body_bytes");
  frame_ = original;
  set_header_field(fl::kMetaBytes, kMetaBytesMax + 1, 4);
  expect_rejected(ErrorCode::kLimit, "meta_bytes");
  frame_ = original;
  set_header_field(fl::kMetaCount, kMetaKeysMax + 1, 2);
  expect_rejected(ErrorCode::kLimit, "meta_count");
  frame_ = original;
  set_header_field(fl::kManifestCount, kTensorCountMax + 1, 2);
  expect_rejected(ErrorCode::kLimit, "manifest_count");
  frame_ = original;
  set_header_field(fl::kPayloadBytes, kPayloadBytesMax + 1, 8);
  expect_rejected(ErrorCode::kLimit, "payload_bytes");
  frame_ = original;
  set_header_field(fl::kMetaBytes, frame_.size(), 4);
  expect_rejected(ErrorCode::kDecode, "exceeds body_bytes");
}

TEST_F(Decode, HeaderEnumsAndRank) {
  const std::vector<std::uint8_t> original = frame_;
  set_header_field(fl::kKind, 9, 1);
  expect_rejected(ErrorCode::kDecode, "kind 9");
  frame_ = original;
  set_header_field(fl::kAction, 0, 1);
  expect_rejected(ErrorCode::kDecode, "action 0");
  frame_ = original;
  set_header_field(fl::kSenderRank, 0xFFFFFFFFu, 4);
  expect_rejected(ErrorCode::kDecode, "sender_rank -1");
  frame_ = original;
  set_header_field(fl::kKind, static_cast<std::uint8_t>(MessageKind::kResult), 1);
  expect_rejected(ErrorCode::kDecode, "frame kind is result, expected envelope");
}

TEST_F(Decode, WrongJobToken) {
  FrameExpectations other = expectations();
  other.job_token_digest = job_token_digest("another-job", 0);
  expect_rejected(ErrorCode::kJobToken, "another job", other);
}

// Warm recovery: a straggler of generation 0 reaches a rank of generation 1.
TEST_F(Decode, FrameOfAnEarlierGenerationIsStaleWork) {
  FrameExpectations later = expectations();
  later.job_token_digest = job_token_digest(wire_test::kJobToken, 1);
  expect_rejected(ErrorCode::kStaleWork, "generation 0 of this job; this rank runs generation 1 (a straggler", later);
}

TEST_F(Decode, HeaderCountsThatDisagreeWithTheBody) {
  const std::vector<std::uint8_t> original = frame_;
  set_header_field(fl::kPayloadBytes, load_le(frame_.data() + fl::kPayloadBytes, 8) + 1, 8);
  expect_rejected(ErrorCode::kDecode, "payload_bytes");
  frame_ = original;
  set_header_field(fl::kMetaCount, load_le(frame_.data() + fl::kMetaCount, 2) - 1, 2);
  expect_rejected(ErrorCode::kDecode, "meta section has");
  frame_ = original;
  set_header_field(fl::kManifestCount, 4, 2);
  expect_rejected(ErrorCode::kDecode, "truncated reading tensor key length");
  frame_ = original;
  set_header_field(fl::kPlanId, 0, 8);
  expect_rejected(ErrorCode::kSchema, "plan.plan_id is 0");
}

// Body edits with both checksums resealed: the schema and codec checks of the
// decoder are what must catch them (a buggy or hostile sender, not noise).
TEST_F(Decode, PlanArithmeticOnTheWire) {
  // Body: geometry (12 bytes), then num_denoise_steps, expected_generator_calls.
  store_le(frame_.data() + kHeaderBytes + 16, 9, 4);
  wire_test::reseal_frame(frame_);
  expect_rejected(ErrorCode::kSchema, "expected_generator_calls is 9");
}

TEST_F(Decode, NonCanonicalFlagOnTheWire) {
  frame_[kHeaderBytes + 20] = 2;  // do_kv_recompute
  wire_test::reseal_frame(frame_);
  expect_rejected(ErrorCode::kDecode, "plan.do_kv_recompute byte is 2");
}

TEST_F(Decode, UnsupportedDtypeOnTheWire) {
  // The last manifest entry is noise_seed[0]: u8 len, 10 key bytes, u32 index,
  // u8 dtype, u8 rank, 1 dim, u64 size = 33 bytes; dtype is its 16th byte.
  frame_[frame_.size() - 33 + 15] = 42;
  wire_test::reseal_frame(frame_);
  expect_rejected(ErrorCode::kEncode, "tensor 'noise_seed[0]' has unsupported dtype 42");
}

TEST_F(Decode, HostileRankOnTheWire) {
  frame_[frame_.size() - 33 + 16] = 200;
  wire_test::reseal_frame(frame_);
  expect_rejected(ErrorCode::kLimit, "rank 200");
}

TEST_F(Decode, InconsistentTensorBytesOnTheWire) {
  store_le(frame_.data() + frame_.size() - 8, 31, 8);
  wire_test::reseal_frame(frame_);
  expect_rejected(ErrorCode::kSchema, "tensor 'noise_seed[0]' says 31 bytes");
}

TEST_F(Decode, ReceiverAllocatesFromTheManifest) {
  const DecodedEnvelope decoded = decode_envelope(frame_, expectations());
  const PayloadBuffers buffers = allocate_payload(decoded.manifest);
  ASSERT_EQ(buffers.count(), 3u);
  EXPECT_EQ(buffers.payload_bytes(), decoded.header.payload_bytes);
  for (std::size_t i = 0; i < buffers.count(); ++i) {
    EXPECT_EQ(buffers.tensor(i).size(), decoded.manifest[i].size_bytes);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffers.tensor(i).data()) % 64, 0u);
  }
  EXPECT_LOCKSTEP_ERROR(buffers.tensor(3), ErrorCode::kInvalidArgument, "position 3");
}

TEST(AllocatePayload, RechecksAManifestItDidNotDecode) {
  TensorManifest manifest{{"b", 0, DType::kF32, {4}, 16}, {"a", 0, DType::kF32, {4}, 16}};
  EXPECT_LOCKSTEP_ERROR(allocate_payload(manifest), ErrorCode::kSchema, "tensor 'a[0]' is not after");
  manifest = {{"a", 0, DType::kF32, {4}, 15}};
  EXPECT_LOCKSTEP_ERROR(allocate_payload(manifest), ErrorCode::kSchema, "says 15 bytes");
  manifest = {{"a", 0, DType::kF32, {std::int64_t{1} << 31}, std::uint64_t{1} << 33}};
  EXPECT_LOCKSTEP_ERROR(allocate_payload(manifest), ErrorCode::kLimit, "kPayloadBytesMax");
  EXPECT_EQ(allocate_payload({}).count(), 0u);
  manifest = {{"empty", 0, DType::kU8, {0, 5}, 0}};
  EXPECT_EQ(allocate_payload(manifest).tensor(0).size(), 0u);
}

// Random corruption of a valid frame: whatever the bytes, the decoder either
// decodes or throws lockstep::Error; it never crashes or reads out of bounds
// (ASan runs this too). The libFuzzer target explores far more.
TEST_F(Decode, RandomCorruptionOnlyEverThrowsLockstepErrors) {
  std::mt19937_64 rng(20261124);
  std::size_t decoded = 0;
  for (int round = 0; round < 3000; ++round) {
    std::vector<std::uint8_t> bytes = frame_;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) bytes[rng() % bytes.size()] = static_cast<std::uint8_t>(rng());
    if (round % 2 == 0) wire_test::reseal_frame(bytes);
    bytes.resize(rng() % 8 == 0 ? rng() % (bytes.size() + 1) : bytes.size());
    try {
      decode_envelope(bytes, expectations());
      ++decoded;
    } catch (const Error&) {
    }
  }
  EXPECT_LT(decoded, 3000u);
}

}  // namespace
}  // namespace lockstep
