#include "lockstep/backend_channel.h"

#include <array>
#include <cstring>
#include <string>

#include "lockstep/clock.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

// "LSCF": marks a control-frame header so a reader fed a stray message
// (wrong tag reuse, misrouted bytes) fails loudly instead of misreading it.
constexpr std::uint32_t kFrameHeaderMagic = 0x4643534cU;
constexpr std::size_t kFrameHeaderBytes = 16;  // magic u32, length u32, seq u64 (little-endian)

using FrameHeader = std::array<std::uint8_t, kFrameHeaderBytes>;

FrameHeader encode_header(std::uint32_t length, std::uint64_t seq) {
  FrameHeader header{};
  for (int i = 0; i < 4; ++i) header[i] = static_cast<std::uint8_t>(kFrameHeaderMagic >> (8 * i));
  for (int i = 0; i < 4; ++i) header[4 + i] = static_cast<std::uint8_t>(length >> (8 * i));
  for (int i = 0; i < 8; ++i) header[8 + i] = static_cast<std::uint8_t>(seq >> (8 * i));
  return header;
}

std::uint64_t read_le(const std::uint8_t* bytes, int width) {
  std::uint64_t value = 0;
  for (int i = 0; i < width; ++i) value |= std::uint64_t{bytes[i]} << (8 * i);
  return value;
}

// What is left of a deadline shared by several backend calls; at least 1 ms
// so a call made at the edge still fails by its own timeout, not by ours.
std::chrono::milliseconds remaining(std::int64_t deadline_ns) {
  const std::int64_t left_ns = deadline_ns - steady_clock().now_ns();
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(left_ns));
  return left < std::chrono::milliseconds(1) ? std::chrono::milliseconds(1) : left;
}

}  // namespace

BackendChannel::BackendChannel(Backend& backend, BackendChannelOptions options)
    : backend_(backend),
      options_(std::move(options)),
      is_writer_(backend.rank() == options_.writer_group_rank),
      owner_("backend channel '" + options_.name + "' " +
             (is_writer_ ? std::string("writer") : "reader " + std::to_string(backend.rank()))) {
  const bool bad = backend.size() < 2 || options_.writer_group_rank < 0 ||
                   options_.writer_group_rank >= backend.size() || options_.frame_bytes_max < 1 ||
                   options_.frame_bytes_max > kBackendChannelFrameBytesMax;
  if (bad) {
    throw Error(ErrorCode::kInvalidArgument,
                "backend channel '" + options_.name + "': needs a group of >= 2 ranks (has " +
                    std::to_string(backend.size()) + "), writer_group_rank " +
                    std::to_string(options_.writer_group_rank) + " in it and frame_bytes_max " +
                    std::to_string(options_.frame_bytes_max) + " in [1, " +
                    std::to_string(kBackendChannelFrameBytesMax) + "]");
  }
}

std::string BackendChannel::describe() const {
  return "backend:" + backend_.name() + " channel '" + options_.name + "' " +
         (is_writer_ ? std::string("writer") : "reader " + std::to_string(backend_.rank()));
}

void BackendChannel::check_usable(bool want_writer) const {
  owner_.check();
  if (want_writer != is_writer_) {
    throw Error(ErrorCode::kInvalidArgument, describe() + ": " + (want_writer ? "publish" : "receive") +
                                                 "() is not allowed on this endpoint");
  }
  if (cancelled_.load(std::memory_order_acquire)) {
    throw Error(ErrorCode::kAborted, describe() + ": channel cancelled");
  }
}

void BackendChannel::publish(std::span<const std::uint8_t> frame, std::chrono::milliseconds timeout) {
  check_usable(true);
  if (frame.size() > options_.frame_bytes_max) {
    throw Error(ErrorCode::kLimit, describe() + ": frame of " + std::to_string(frame.size()) +
                                       " bytes exceeds frame_bytes_max " +
                                       std::to_string(options_.frame_bytes_max));
  }
  const std::int64_t deadline_ns = steady_clock().now_ns() + std::chrono::nanoseconds(timeout).count();
  const FrameHeader header = encode_header(static_cast<std::uint32_t>(frame.size()), next_seq_);
  for (int reader = 0; reader < backend_.size(); ++reader) {
    if (reader == options_.writer_group_rank) continue;
    backend_.send(header.data(), header.size(), reader, options_.tag, remaining(deadline_ns));
    if (!frame.empty()) {
      backend_.send(frame.data(), frame.size(), reader, options_.tag, remaining(deadline_ns));
    }
  }
  ++next_seq_;
}

std::size_t BackendChannel::receive(std::span<std::uint8_t> buffer, std::chrono::milliseconds timeout) {
  check_usable(false);
  if (buffer.size() < options_.frame_bytes_max) {
    throw Error(ErrorCode::kInvalidArgument,
                describe() + ": receive buffer of " + std::to_string(buffer.size()) +
                    " bytes is smaller than frame_bytes_max " + std::to_string(options_.frame_bytes_max));
  }
  const std::int64_t deadline_ns = steady_clock().now_ns() + std::chrono::nanoseconds(timeout).count();
  FrameHeader header{};
  backend_.recv(header.data(), header.size(), options_.writer_group_rank, options_.tag, timeout);
  const std::uint64_t magic = read_le(header.data(), 4);
  const std::uint64_t length = read_le(header.data() + 4, 4);
  const std::uint64_t seq = read_le(header.data() + 8, 8);
  if (magic != kFrameHeaderMagic || seq != next_seq_ || length > options_.frame_bytes_max) {
    // The stream is out of step; nothing after this can be trusted.
    cancel();
    throw Error(ErrorCode::kDecode, describe() + ": bad frame header (magic " + std::to_string(magic) +
                                        ", seq " + std::to_string(seq) + " expected " +
                                        std::to_string(next_seq_) + ", length " +
                                        std::to_string(length) + ")");
  }
  if (length > 0) {
    backend_.recv(buffer.data(), length, options_.writer_group_rank, options_.tag, remaining(deadline_ns));
  }
  ++next_seq_;
  return length;
}

void BackendChannel::cancel() noexcept {
  if (cancelled_.exchange(true)) return;
  // Best effort: cancel runs on failure paths, where a throwing abort must
  // not replace the error being handled.
  try {
    backend_.abort();
  } catch (...) {
  }
}

}  // namespace lockstep
