// How a stream-ordered call tells that it finished (SPEC §4C). A backend that
// enqueues work on a GPU stream and returns at once hands back a
// CompletionProbe; whoever enqueued it hands the probe to a CompletionSink
// (guard's CompletionTracker), which polls it off the caller's thread and
// reports the call started / completed / failed. Kept apart from the tracker
// so backends (below guard) can produce probes without knowing guard.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "lockstep/collective_observer.h"

namespace lockstep {

// Tells whether one tracked call finished. Polled by one thread at a time
// (the tracker's poller); destroyed on that thread or by the sink's owner.
class CompletionProbe {
 public:
  virtual ~CompletionProbe() = default;
  enum class State : std::uint8_t { kPending, kDone, kFailed };
  // Non-blocking. On kFailed, `error` says why (e.g. NCCL's async error).
  virtual State poll(std::string& error) = 0;
};

// One completion seen by several tracked calls (each tracked on its own,
// all finish together): the calls of one graph replay and its marker, or a
// call Python completes through a FlagProbe it keeps. Polled by the
// tracker's thread only.
class SharedProbe final : public CompletionProbe {
 public:
  explicit SharedProbe(std::shared_ptr<CompletionProbe> probe) : probe_(std::move(probe)) {}
  State poll(std::string& error) override { return probe_->poll(error); }

 private:
  std::shared_ptr<CompletionProbe> probe_;
};

// Where enqueued calls go to be watched until they complete. Lanes are FIFO:
// calls tracked on one lane complete in the order they were tracked (one GPU
// stream, or one process group's work queue).
class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  // Takes over `probe` for the call `event` describes (its state is
  // ignored). Non-blocking unless the lane is full; then waits for room at
  // most `timeout` and throws Error{kTimeout}. Any thread.
  virtual void track(std::size_t lane, const CollectiveEvent& event, std::unique_ptr<CompletionProbe> probe,
                     std::chrono::milliseconds timeout) = 0;
};

}  // namespace lockstep
