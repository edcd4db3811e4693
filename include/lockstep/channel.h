// The control-channel seam (SPEC §4A): encoded frames (envelopes, results)
// from one writer to one or more readers, separate from the tensor data path.
// Every reader receives every frame, in publish order. Implementations:
// ShmRing (one host, shared memory; shm_ring.h), BackendChannel (across
// hosts, over a Backend's send/recv; backend_channel.h), and the simulator's.
//
// A Channel object is one endpoint (the writer or one reader) and obeys the
// single-owner rule: publish()/receive() from a thread other than the one
// that first used the endpoint throw Error{kOwnership} naming both threads.
// The channel never interprets frame bytes; the wire layer validates them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace lockstep {

class Channel {
 public:
  virtual ~Channel() = default;

  // Writer endpoint only. Blocks until every reader can receive the frame
  // (a full channel is backpressure), at most `timeout`. Throws
  // Error{kLimit} when frame.size() > frame_bytes_max() (before blocking),
  // Error{kTimeout} on expiry, Error{kPeerFailure} when a reader is known
  // dead, Error{kAborted} after cancel(), Error{kOwnership} from a
  // non-owner thread, Error{kInvalidArgument} on a reader endpoint.
  virtual void publish(std::span<const std::uint8_t> frame, std::chrono::milliseconds timeout) = 0;

  // Reader endpoint only. Blocks until the next frame arrives, at most
  // `timeout`, copies it into `buffer` and returns its size. REQUIRES
  // buffer.size() >= frame_bytes_max() (else Error{kInvalidArgument}, before
  // anything is consumed). Throws like publish(); Error{kPeerFailure} when
  // the writer is known dead.
  virtual std::size_t receive(std::span<std::uint8_t> buffer, std::chrono::milliseconds timeout) = 0;
  // Reader endpoint only: true when the next frame has arrived, so receive()
  // returns it without waiting. Never blocks. A channel that cannot tell
  // (one over a backend's recv) says false: callers read ahead only where
  // it is free.
  virtual bool frame_waiting() { return false; }

  // Makes every pending and later publish()/receive() fail promptly with
  // Error{kAborted}. Any thread, any time; idempotent; non-blocking.
  virtual void cancel() noexcept = 0;

  // Largest frame this channel carries. Any thread.
  virtual std::size_t frame_bytes_max() const = 0;
  // "shm:/lockstep-<job>-ctl writer" and the like, for errors and dumps.
  virtual std::string describe() const = 0;
};

}  // namespace lockstep
