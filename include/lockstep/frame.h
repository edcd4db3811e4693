// The fixed-size frame header (SPEC §4A). Every frame is
//   header (kHeaderBytes, little-endian, layout below) + body (body_bytes)
// and the tensor payload it announces travels separately over the backend.
// A receiver reads kHeaderBytes, calls decode_header(), and only then reads
// (at most kBodyBytesMax) body bytes: a bad frame is rejected from the header
// alone, before any allocation sized by the input.
//
// The header layout is frozen across protocol versions (only bodies change),
// so a frame of an unknown version is still recognised and reported as such.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "lockstep/protocol_version.h"
#include "lockstep/wire_limits.h"

namespace lockstep {

enum class MessageKind : std::uint8_t {
  kEnvelope = 1,  // Stage 0 → mesh (envelope.h)
  kResult = 2,    // mesh → Stage 0 (result.h)
  kControl = 3,   // handshake HELLO, ERROR broadcast (control.h)
};
inline constexpr std::uint8_t kMessageKindMaxValue = 3;

// SPEC §2. Only INFER carries a plan and a payload.
enum class Action : std::uint8_t {
  kNoop = 1,
  kInfer = 2,
  kShutdown = 3,
  kError = 4,
};
inline constexpr std::uint8_t kActionMaxValue = 4;

std::string_view message_kind_name(MessageKind kind);  // "envelope", "result", "control"
std::string_view action_name(Action action);           // "NOOP", "INFER", "SHUTDOWN", "ERROR"

// 'L' 'K' 'S' 'T' as the first four bytes on the wire.
inline constexpr std::uint32_t kFrameMagic = 0x54534B4Cu;

// Byte offsets of the little-endian header fields.
namespace frame_layout {
inline constexpr std::size_t kMagic = 0;             // u32
inline constexpr std::size_t kVersion = 4;           // u16
inline constexpr std::size_t kKind = 6;              // u8 MessageKind
inline constexpr std::size_t kAction = 7;            // u8 Action
inline constexpr std::size_t kCallId = 8;            // u64
inline constexpr std::size_t kChunkIndex = 16;       // u64
inline constexpr std::size_t kCacheEpoch = 24;       // u64
inline constexpr std::size_t kPlanId = 32;           // u64
inline constexpr std::size_t kPayloadBytes = 40;     // u64 sum of manifest size_bytes
inline constexpr std::size_t kJobTokenDigest = 48;   // u64 job_token_digest(token, generation)
inline constexpr std::size_t kBodyBytes = 56;        // u32
inline constexpr std::size_t kMetaBytes = 60;        // u32 meta section inside the body
inline constexpr std::size_t kSenderRank = 64;       // i32 global rank
inline constexpr std::size_t kManifestCount = 68;    // u16
inline constexpr std::size_t kMetaCount = 70;        // u16
inline constexpr std::size_t kBodyChecksum = 72;     // u64 XXH3-64 of the body
inline constexpr std::size_t kHeaderChecksum = 80;   // u64 XXH3-64 of bytes [0, 80)
inline constexpr std::size_t kEnd = 88;
}  // namespace frame_layout

inline constexpr std::size_t kHeaderBytes = frame_layout::kEnd;
inline constexpr std::size_t kFrameBytesMax = kHeaderBytes + kBodyBytesMax;

// The decoded header. Values are host-order; the wire is always LE.
struct FrameHeader {
  ProtocolVersion version = 0;
  MessageKind kind = MessageKind::kEnvelope;
  Action action = Action::kNoop;
  std::uint64_t call_id = 0;
  std::uint64_t chunk_index = 0;
  std::uint64_t cache_epoch = 0;
  std::uint64_t plan_id = 0;
  std::uint64_t payload_bytes = 0;
  std::uint64_t job_token_digest = 0;
  std::uint32_t body_bytes = 0;
  std::uint32_t meta_bytes = 0;
  std::int32_t sender_rank = 0;
  std::uint16_t manifest_count = 0;
  std::uint16_t meta_count = 0;
  std::uint64_t body_checksum = 0;
  std::uint64_t header_checksum = 0;

  bool operator==(const FrameHeader&) const = default;
};

// What a receiver requires of every frame besides well-formedness.
struct FrameExpectations {
  std::uint64_t job_token_digest = 0;  // job_token_digest(job token, generation)
  // The negotiated version; 0 accepts any version this build supports
  // (only before the handshake has finished).
  ProtocolVersion version = 0;
};

// Decodes and checks a header, in this order, throwing at the first failure:
// magic (kDecode), header checksum (kChecksum), version supported and equal to
// expect.version when set (kVersion), kind and action enumerators (kDecode),
// body_bytes/meta_bytes/meta_count/manifest_count/payload_bytes against the
// limits of wire_limits.h and meta_bytes <= body_bytes (kLimit / kDecode),
// sender_rank >= 0 (kDecode), job token digest (kJobToken), then the
// generation in its low bits (kStaleWork: a straggler; digest.h). Each message
// names the field. Never reads outside `header`; allocates nothing except the
// message on failure. Pure; any thread.
FrameHeader decode_header(std::span<const std::uint8_t, kHeaderBytes> header,
                          const FrameExpectations& expect);

// Writes `header` in wire layout, computing header_checksum (the field's value
// in `header` is ignored). Used by preflight; exposed for tests and tools.
void encode_header(const FrameHeader& header, std::span<std::uint8_t, kHeaderBytes> out) noexcept;

}  // namespace lockstep
