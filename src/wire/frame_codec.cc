#include "wire/frame_codec.h"

#include <string>

#include "lockstep/error.h"

namespace lockstep::wire_detail {

FrameHeader header_for(Action action, ProtocolVersion version, std::int32_t sender_rank,
                       std::uint64_t job_token_digest) {
  FrameHeader header;
  header.action = action;
  header.version = version;
  header.sender_rank = sender_rank;
  header.job_token_digest = job_token_digest;
  return header;
}

void check_context(ProtocolVersion version, std::int32_t sender_rank) {
  if (!protocol_version_supported(version)) {
    throw Error(ErrorCode::kVersion, "cannot encode protocol version " + std::to_string(version) +
                                         " (this build speaks " + std::to_string(kProtocolVersionMin) + ".." +
                                         std::to_string(kProtocolVersionMax) + ")");
  }
  if (sender_rank < 0) {
    throw Error(ErrorCode::kInvalidArgument, "sender_rank " + std::to_string(sender_rank) + " is negative");
  }
}

FrameHeader open_frame(std::span<const std::uint8_t> frame, const FrameExpectations& expect, MessageKind kind) {
  if (frame.size() < kHeaderBytes) {
    throw Error(ErrorCode::kDecode, "frame is " + std::to_string(frame.size()) + " bytes, shorter than the " +
                                        std::to_string(kHeaderBytes) + "-byte header");
  }
  const FrameHeader header = decode_header(frame.first<kHeaderBytes>(), expect);
  if (header.kind != kind) {
    throw Error(ErrorCode::kDecode, "frame kind is " + std::string(message_kind_name(header.kind)) + ", expected " +
                                        std::string(message_kind_name(kind)));
  }
  if (frame.size() != kHeaderBytes + header.body_bytes) {
    throw Error(ErrorCode::kDecode, "frame is " + std::to_string(frame.size()) + " bytes but its header announces " +
                                        std::to_string(kHeaderBytes + header.body_bytes) +
                                        " (header + body_bytes): truncated or trailing bytes");
  }
  const std::uint64_t computed = digest_bytes(frame.subspan(kHeaderBytes));
  if (computed != header.body_checksum) {
    throw Error(ErrorCode::kChecksum, "frame body checksum mismatch: carried " + digest_hex(header.body_checksum) +
                                          ", computed " + digest_hex(computed));
  }
  return header;
}

void check_no_meta(const FrameHeader& header) {
  if (header.meta_bytes != 0 || header.meta_count != 0) {
    throw Error(ErrorCode::kDecode, std::string(message_kind_name(header.kind)) + " frame announces meta (" +
                                        std::to_string(header.meta_count) + " keys, " +
                                        std::to_string(header.meta_bytes) + " bytes); only envelopes carry meta");
  }
}

void check_body_consumed(const Reader& in, const FrameHeader& header) {
  if (in.remaining() != 0) {
    throw Error(ErrorCode::kDecode, std::string(message_kind_name(header.kind)) + " body has " +
                                        std::to_string(in.remaining()) + " trailing bytes");
  }
}

std::size_t reason_bytes(std::string_view reason) noexcept { return 4 + reason.size(); }

void write_reason(Writer& out, std::string_view reason) {
  out.u32(static_cast<std::uint32_t>(reason.size()));
  out.bytes(reason);
}

std::string read_reason(Reader& in) {
  const std::uint32_t bytes = in.u32("error_reason length");
  if (bytes > kStringBytesMax) {
    throw Error(ErrorCode::kLimit, "error_reason is " + std::to_string(bytes) + " bytes, more than kStringBytesMax " +
                                       std::to_string(kStringBytesMax));
  }
  return std::string(in.bytes("error_reason", bytes));
}

bool read_flag(Reader& in, std::string_view field) {
  const std::uint8_t raw = in.u8(field);
  if (raw > 1) {
    throw Error(ErrorCode::kDecode, std::string(field) + " byte is " + std::to_string(raw) + ", not 0 or 1");
  }
  return raw == 1;
}

}  // namespace lockstep::wire_detail
