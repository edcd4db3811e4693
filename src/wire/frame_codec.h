// Assembling and opening complete frames: shared by the envelope, result and
// control codecs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "lockstep/assert.h"
#include "lockstep/digest.h"
#include "lockstep/frame.h"
#include "lockstep/prepared.h"
#include "wire/bytes.h"
#include "wire/manifest_codec.h"

namespace lockstep::wire_detail {

// The one place Prepared values are constructed. Callers have checked
// everything that can fail; from here on only lockstep bugs can (asserted).
struct PreparedFactory {
  // `header` supplies ids, action, version, rank, token, plan id and meta
  // counts; kind, sizes and checksums are filled in here. write_body(Writer&)
  // must write exactly body_bytes.
  template <MessageKind Kind, typename WriteBody>
  static Prepared<Kind> make(FrameHeader header, std::size_t body_bytes, ManifestBuild&& tensors,
                             WriteBody&& write_body) {
    LOCKSTEP_ASSERT(body_bytes <= kBodyBytesMax);
    Prepared<Kind> prepared;
    prepared.frame_bytes_ = kHeaderBytes + body_bytes;
    prepared.frame_ = std::make_unique_for_overwrite<std::uint8_t[]>(prepared.frame_bytes_);
    const std::span<std::uint8_t> body(prepared.frame_.get() + kHeaderBytes, body_bytes);
    Writer out(body);
    write_body(out);
    LOCKSTEP_ASSERT(out.done());
    header.kind = Kind;
    header.body_bytes = static_cast<std::uint32_t>(body_bytes);
    header.manifest_count = static_cast<std::uint16_t>(tensors.manifest.size());
    header.payload_bytes = tensors.payload_bytes;
    header.body_checksum = digest_bytes(body);
    const std::span<std::uint8_t, kHeaderBytes> header_bytes(prepared.frame_.get(), kHeaderBytes);
    encode_header(header, header_bytes);
    header.header_checksum = load_le(header_bytes.data() + frame_layout::kHeaderChecksum, 8);
    prepared.header_ = header;
    prepared.manifest_ = std::move(tensors.manifest);
    prepared.payload_ = std::move(tensors.payload);
    return prepared;
  }
};

// Header fields every frame kind takes from its sender's context.
FrameHeader header_for(Action action, ProtocolVersion version, std::int32_t sender_rank, std::uint64_t job_token_digest);

// Throws Error{kVersion} unless this build can encode `version`, and
// Error{kInvalidArgument} for a negative sender rank.
void check_context(ProtocolVersion version, std::int32_t sender_rank);

// Checks a complete frame up to its body: size >= kHeaderBytes, the header
// (decode_header), kind, exact frame size, body checksum. Returns the header;
// the body is frame.subspan(kHeaderBytes).
FrameHeader open_frame(std::span<const std::uint8_t> frame, const FrameExpectations& expect, MessageKind kind);

// Throws Error{kDecode} when a frame of this kind announces meta (only
// envelopes carry meta).
void check_no_meta(const FrameHeader& header);

// Throws Error{kDecode} when bytes are left after the last field.
void check_body_consumed(const Reader& in, const FrameHeader& header);

// Reason strings (ERROR frames): u32 byte count + UTF-8 bytes.
std::size_t reason_bytes(std::string_view reason) noexcept;
void write_reason(Writer& out, std::string_view reason);
// Bounded by kStringBytesMax before anything is allocated (kLimit).
std::string read_reason(Reader& in);

// Reads a u8 that must be 0 or 1.
bool read_flag(Reader& in, std::string_view field);

}  // namespace lockstep::wire_detail
