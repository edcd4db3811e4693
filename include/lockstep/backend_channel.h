// The inter-host control channel (SPEC §4A): the Channel interface over a
// Backend's point-to-point path. The writer sends each frame to every other
// rank of the backend's group (the readers) as a fixed 16-byte header
// (magic, length, sequence) followed by the payload; a reader checks the
// header (magic, expected sequence, length bound) before receiving the body.
//
// Give the channel a Backend of its own (a dedicated group such as
// "boundary.ctl"): cancel() aborts it, and control frames never interleave
// with the tensor data path.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "lockstep/backend.h"
#include "lockstep/channel.h"
#include "lockstep/single_owner.h"

namespace lockstep {

inline constexpr std::size_t kBackendChannelFrameBytesMax = std::size_t{1} << 20;

struct BackendChannelOptions {
  std::string name;                 // for errors ("ctl")
  int writer_group_rank = 0;        // the backend group rank that publishes
  std::uint32_t tag = 0;            // p2p tag used for this channel's messages
  std::size_t frame_bytes_max = 64 * 1024;  // 1 .. kBackendChannelFrameBytesMax
};

class BackendChannel final : public Channel {
 public:
  // `backend` must outlive the channel; this endpoint is the writer when
  // backend.rank() == writer_group_rank, else a reader. Throws
  // Error{kInvalidArgument} for bad options or a single-rank backend.
  BackendChannel(Backend& backend, BackendChannelOptions options);

  // Sends to readers 1..n in group-rank order, sharing one deadline.
  void publish(std::span<const std::uint8_t> frame, std::chrono::milliseconds timeout) override;
  std::size_t receive(std::span<std::uint8_t> buffer, std::chrono::milliseconds timeout) override;
  // Sets the cancel flag and aborts the backend (which wakes a pending call).
  void cancel() noexcept override;
  std::size_t frame_bytes_max() const override { return options_.frame_bytes_max; }
  std::string describe() const override;

 private:
  void check_usable(bool want_writer) const;

  Backend& backend_;
  const BackendChannelOptions options_;
  const bool is_writer_;
  SingleOwner owner_;
  std::atomic<bool> cancelled_{false};
  std::uint64_t next_seq_ = 0;  // frames published / received by this endpoint
};

}  // namespace lockstep
