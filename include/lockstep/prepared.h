// Prepared frames: the only values a send path accepts (SPEC §4A "make it
// impossible to send an unprepared envelope"). Their constructor is private;
// only the preflight functions of envelope.h, result.h and control.h make
// them, after every check that can fail has passed. A Prepared value holds the
// complete encoded frame (header + body) and the payload spans, in manifest
// order, that follow it over the backend; sending can therefore no longer fail
// for a reason of content, only of transport.
//
// Move-only (a frame is sent once). Immutable; its accessors may be called
// from any thread. The payload spans borrow the caller's tensor memory (see
// TensorView::data).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "lockstep/frame.h"
#include "lockstep/tensor_manifest.h"

namespace lockstep {

namespace wire_detail {
struct PreparedFactory;  // defined in src/wire only
}  // namespace wire_detail

template <MessageKind Kind>
class Prepared {
 public:
  Prepared(Prepared&&) noexcept = default;
  Prepared& operator=(Prepared&&) noexcept = default;
  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;

  // Header + body, exactly header().body_bytes + kHeaderBytes bytes.
  std::span<const std::uint8_t> frame() const noexcept { return {frame_.get(), frame_bytes_}; }
  const FrameHeader& header() const noexcept { return header_; }
  // Canonical manifest and, position by position, the bytes to send.
  const TensorManifest& manifest() const noexcept { return manifest_; }
  std::span<const std::span<const std::uint8_t>> payload() const noexcept { return payload_; }

 private:
  friend struct wire_detail::PreparedFactory;
  Prepared() = default;

  // Not a vector: the encoder overwrites every byte, so zero-filling first
  // would only cost time on the hot path.
  std::unique_ptr<std::uint8_t[]> frame_;
  std::size_t frame_bytes_ = 0;
  FrameHeader header_;
  TensorManifest manifest_;
  std::vector<std::span<const std::uint8_t>> payload_;
};

using PreparedEnvelope = Prepared<MessageKind::kEnvelope>;
using PreparedResult = Prepared<MessageKind::kResult>;
using PreparedControl = Prepared<MessageKind::kControl>;

}  // namespace lockstep
