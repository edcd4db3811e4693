#include "lockstep/frame.h"

#include <string>

#include "lockstep/digest.h"
#include "lockstep/error.h"
#include "lockstep/wire_limits.h"
#include "wire/bytes.h"

namespace lockstep {

namespace fl = frame_layout;

// The layout is a contract with every other build: pin it.
static_assert(fl::kVersion == fl::kMagic + 4);
static_assert(fl::kKind == fl::kVersion + 2);
static_assert(fl::kAction == fl::kKind + 1);
static_assert(fl::kCallId == fl::kAction + 1);
static_assert(fl::kChunkIndex == fl::kCallId + 8);
static_assert(fl::kCacheEpoch == fl::kChunkIndex + 8);
static_assert(fl::kPlanId == fl::kCacheEpoch + 8);
static_assert(fl::kPayloadBytes == fl::kPlanId + 8);
static_assert(fl::kJobTokenDigest == fl::kPayloadBytes + 8);
static_assert(fl::kBodyBytes == fl::kJobTokenDigest + 8);
static_assert(fl::kMetaBytes == fl::kBodyBytes + 4);
static_assert(fl::kSenderRank == fl::kMetaBytes + 4);
static_assert(fl::kManifestCount == fl::kSenderRank + 4);
static_assert(fl::kMetaCount == fl::kManifestCount + 2);
static_assert(fl::kBodyChecksum == fl::kMetaCount + 2);
static_assert(fl::kHeaderChecksum == fl::kBodyChecksum + 8);
static_assert(fl::kEnd == fl::kHeaderChecksum + 8);
static_assert(kHeaderBytes == 88, "header size is part of the wire contract");
static_assert(fl::kCallId % 8 == 0 && fl::kBodyChecksum % 8 == 0 && fl::kHeaderChecksum % 8 == 0);
// Limits must fit the header's field widths.
static_assert(kBodyBytesMax <= UINT32_MAX && kMetaBytesMax <= UINT32_MAX);
static_assert(kTensorCountMax <= UINT16_MAX && kMetaKeysMax <= UINT16_MAX);

std::string_view message_kind_name(MessageKind kind) {
  switch (kind) {
    case MessageKind::kEnvelope: return "envelope";
    case MessageKind::kResult: return "result";
    case MessageKind::kControl: return "control";
  }
  return "invalid";
}

std::string_view action_name(Action action) {
  switch (action) {
    case Action::kNoop: return "NOOP";
    case Action::kInfer: return "INFER";
    case Action::kShutdown: return "SHUTDOWN";
    case Action::kError: return "ERROR";
  }
  return "invalid";
}

void encode_header(const FrameHeader& h, std::span<std::uint8_t, kHeaderBytes> out) noexcept {
  using wire_detail::store_le;
  std::uint8_t* p = out.data();
  store_le(p + fl::kMagic, kFrameMagic, 4);
  store_le(p + fl::kVersion, h.version, 2);
  store_le(p + fl::kKind, static_cast<std::uint8_t>(h.kind), 1);
  store_le(p + fl::kAction, static_cast<std::uint8_t>(h.action), 1);
  store_le(p + fl::kCallId, h.call_id, 8);
  store_le(p + fl::kChunkIndex, h.chunk_index, 8);
  store_le(p + fl::kCacheEpoch, h.cache_epoch, 8);
  store_le(p + fl::kPlanId, h.plan_id, 8);
  store_le(p + fl::kPayloadBytes, h.payload_bytes, 8);
  store_le(p + fl::kJobTokenDigest, h.job_token_digest, 8);
  store_le(p + fl::kBodyBytes, h.body_bytes, 4);
  store_le(p + fl::kMetaBytes, h.meta_bytes, 4);
  store_le(p + fl::kSenderRank, static_cast<std::uint32_t>(h.sender_rank), 4);
  store_le(p + fl::kManifestCount, h.manifest_count, 2);
  store_le(p + fl::kMetaCount, h.meta_count, 2);
  store_le(p + fl::kBodyChecksum, h.body_checksum, 8);
  store_le(p + fl::kHeaderChecksum, digest_bytes(p, fl::kHeaderChecksum), 8);
}

namespace {

FrameHeader read_fields(const std::uint8_t* p) {
  using wire_detail::load_le;
  FrameHeader h;
  h.version = static_cast<ProtocolVersion>(load_le(p + fl::kVersion, 2));
  h.kind = static_cast<MessageKind>(load_le(p + fl::kKind, 1));
  h.action = static_cast<Action>(load_le(p + fl::kAction, 1));
  h.call_id = load_le(p + fl::kCallId, 8);
  h.chunk_index = load_le(p + fl::kChunkIndex, 8);
  h.cache_epoch = load_le(p + fl::kCacheEpoch, 8);
  h.plan_id = load_le(p + fl::kPlanId, 8);
  h.payload_bytes = load_le(p + fl::kPayloadBytes, 8);
  h.job_token_digest = load_le(p + fl::kJobTokenDigest, 8);
  h.body_bytes = static_cast<std::uint32_t>(load_le(p + fl::kBodyBytes, 4));
  h.meta_bytes = static_cast<std::uint32_t>(load_le(p + fl::kMetaBytes, 4));
  h.sender_rank = static_cast<std::int32_t>(static_cast<std::uint32_t>(load_le(p + fl::kSenderRank, 4)));
  h.manifest_count = static_cast<std::uint16_t>(load_le(p + fl::kManifestCount, 2));
  h.meta_count = static_cast<std::uint16_t>(load_le(p + fl::kMetaCount, 2));
  h.body_checksum = load_le(p + fl::kBodyChecksum, 8);
  h.header_checksum = load_le(p + fl::kHeaderChecksum, 8);
  return h;
}

[[noreturn]] void limit_exceeded(std::string_view field, std::uint64_t value, std::uint64_t max) {
  throw Error(ErrorCode::kLimit, "frame header " + std::string(field) + " = " + std::to_string(value) +
                                     " exceeds its limit " + std::to_string(max));
}

void check_version(ProtocolVersion version, const FrameExpectations& expect) {
  if (!protocol_version_supported(version)) {
    throw Error(ErrorCode::kVersion, "frame header version " + std::to_string(version) +
                                         " is not supported (this build speaks " +
                                         std::to_string(kProtocolVersionMin) + ".." +
                                         std::to_string(kProtocolVersionMax) + ")");
  }
  if (expect.version != 0 && version != expect.version) {
    throw Error(ErrorCode::kVersion, "frame header version " + std::to_string(version) +
                                         " differs from the negotiated version " + std::to_string(expect.version));
  }
}

void check_sizes(const FrameHeader& h) {
  if (h.body_bytes > kBodyBytesMax) limit_exceeded("body_bytes", h.body_bytes, kBodyBytesMax);
  if (h.meta_bytes > kMetaBytesMax) limit_exceeded("meta_bytes", h.meta_bytes, kMetaBytesMax);
  if (h.meta_count > kMetaKeysMax) limit_exceeded("meta_count", h.meta_count, kMetaKeysMax);
  if (h.manifest_count > kTensorCountMax) limit_exceeded("manifest_count", h.manifest_count, kTensorCountMax);
  if (h.payload_bytes > kPayloadBytesMax) limit_exceeded("payload_bytes", h.payload_bytes, kPayloadBytesMax);
  if (h.meta_bytes > h.body_bytes) {
    throw Error(ErrorCode::kDecode, "frame header meta_bytes " + std::to_string(h.meta_bytes) +
                                        " exceeds body_bytes " + std::to_string(h.body_bytes));
  }
}

}  // namespace

FrameHeader decode_header(std::span<const std::uint8_t, kHeaderBytes> header, const FrameExpectations& expect) {
  const std::uint8_t* p = header.data();
  const auto magic = static_cast<std::uint32_t>(wire_detail::load_le(p + fl::kMagic, 4));
  if (magic != kFrameMagic) {
    throw Error(ErrorCode::kDecode, "frame header magic is " + digest_hex(magic).substr(8) + ", expected " +
                                        digest_hex(kFrameMagic).substr(8) + " (not a lockstep frame)");
  }
  FrameHeader h = read_fields(p);
  const std::uint64_t computed = digest_bytes(p, fl::kHeaderChecksum);
  if (computed != h.header_checksum) {
    throw Error(ErrorCode::kChecksum, "frame header checksum mismatch: carried " + digest_hex(h.header_checksum) +
                                          ", computed " + digest_hex(computed));
  }
  check_version(h.version, expect);
  const auto kind_raw = static_cast<std::uint8_t>(h.kind);
  if (kind_raw < 1 || kind_raw > kMessageKindMaxValue) {
    throw Error(ErrorCode::kDecode, "frame header kind " + std::to_string(kind_raw) + " is not a message kind");
  }
  const auto action_raw = static_cast<std::uint8_t>(h.action);
  if (action_raw < 1 || action_raw > kActionMaxValue) {
    throw Error(ErrorCode::kDecode, "frame header action " + std::to_string(action_raw) + " is not an action");
  }
  check_sizes(h);
  if (h.sender_rank < 0) {
    throw Error(ErrorCode::kDecode, "frame header sender_rank " + std::to_string(h.sender_rank) + " is negative");
  }
  if ((h.job_token_digest & ~kFrameGenerationMask) != (expect.job_token_digest & ~kFrameGenerationMask)) {
    throw Error(ErrorCode::kJobToken, "frame from rank " + std::to_string(h.sender_rank) + " carries job token digest " +
                                          digest_hex(h.job_token_digest) + ", expected " +
                                          digest_hex(expect.job_token_digest) + " (a frame of another job)");
  }
  const std::uint64_t generation = h.job_token_digest & kFrameGenerationMask;
  const std::uint64_t expected_generation = expect.job_token_digest & kFrameGenerationMask;
  if (generation != expected_generation) {
    throw Error(ErrorCode::kStaleWork, "frame from rank " + std::to_string(h.sender_rank) + " (call_id " +
                                           std::to_string(h.call_id) + ") belongs to generation " +
                                           std::to_string(generation) + " of this job; this rank runs generation " +
                                           std::to_string(expected_generation) +
                                           (generation < expected_generation ? " (a straggler of an earlier generation)"
                                                                             : " (a generation this rank never joined)"));
  }
  return h;
}

}  // namespace lockstep
