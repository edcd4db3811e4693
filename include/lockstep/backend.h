// The backend seam: the collective engine under one group (Gloo over TCP on
// CPU, NCCL on GPU, a simulated one in the simulator).
//
// A Backend knows nothing of lockstep's groups, phases or ledgers: those checks
// happen in comm's guarded communicator *before* any Backend call. A Backend
// only moves bytes among its members, in group-rank numbering, and fails
// within each call's timeout instead of blocking forever.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/completion_probe.h"
#include "lockstep/dtype.h"
#include "lockstep/error.h"
#include "lockstep/store.h"

namespace lockstep {

enum class ReduceOp : std::uint8_t { kSum = 1, kMax = 2, kMin = 3 };

// Where a buffer lives. A CPU backend accepts only kHost.
enum class MemoryKind : std::uint8_t { kHost = 1, kDevice = 2 };

class Backend {
 public:
  virtual ~Backend() = default;

  virtual int rank() const = 0;  // this process's rank within the group
  virtual int size() const = 0;  // number of ranks in the group
  virtual std::string name() const = 0;  // "gloo", "nccl", "sim"
  virtual MemoryKind memory_kind() const = 0;

  // Every operation below:
  //  - blocks the calling thread until done or until `timeout` expires;
  //  - throws Error{kTimeout} on expiry, Error{kPeerFailure} when a peer is
  //    gone, Error{kBackend} otherwise, Error{kAborted} after abort();
  //  - after any throw the backend is broken for good: every later call throws
  //    Error{kAborted}. A broken group is never rebuilt in place: the process
  //    goes down through guard's fatal path (crash-only), or, under warm
  //    recovery (recovery.h), the rank discards the group with its
  //    generation and connects new ones under the next generation.
  //  - REQUIRES: one calling thread at a time (the comm thread).
  virtual void broadcast(void* data, std::size_t count, DType dtype, int root,
                         std::chrono::milliseconds timeout) = 0;
  virtual void all_reduce(void* data, std::size_t count, DType dtype, ReduceOp op,
                          std::chrono::milliseconds timeout) = 0;
  // out holds size() * count elements, rank r's contribution at r * count.
  virtual void all_gather(const void* in, void* out, std::size_t count, DType dtype,
                          std::chrono::milliseconds timeout) = 0;
  virtual void barrier(std::chrono::milliseconds timeout) = 0;
  virtual void send(const void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
                    std::chrono::milliseconds timeout) = 0;
  virtual void recv(void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
                    std::chrono::milliseconds timeout) = 0;

  // Stream-ordered calls (SPEC §4C), for a backend whose work runs on a GPU
  // stream (stream_ordered() true; the others throw Error{kInvalidArgument}):
  //  - enqueue_all_reduce queues the sum after the work already queued on the
  //    backend's compute stream, so that stream's later work runs after it,
  //    and returns at once with a probe that reports its completion. The
  //    host waits only, bounded by `timeout`, for the library to finish
  //    enqueueing. Device memory only. While the compute stream is being
  //    captured into a CUDA graph the call is captured, not run, and the
  //    probe is null: it runs, and completes, with each replay.
  //  - enqueue_marker returns a probe that completes once everything queued
  //    on the compute stream so far has run (the end of a graph replay).
  //  - Throws and breaks the backend like the blocking calls.
  virtual bool stream_ordered() const { return false; }
  virtual std::unique_ptr<CompletionProbe> enqueue_all_reduce(void* /*data*/, std::size_t /*count*/,
                                                              DType /*dtype*/, ReduceOp /*op*/,
                                                              std::chrono::milliseconds /*timeout*/) {
    throw Error(ErrorCode::kInvalidArgument, name() + " backend has no stream-ordered all_reduce");
  }
  virtual std::unique_ptr<CompletionProbe> enqueue_marker() {
    throw Error(ErrorCode::kInvalidArgument, name() + " backend has no stream to mark");
  }
  //  - enqueue_with runs `enqueue` — stream work that uses this backend's
  //    communicator, such as launching a CUDA graph that holds its calls —
  //    while abort() cannot free the communicator; Error{kAborted} once
  //    aborted or broken. The default (no communicator to free) just runs it.
  virtual void enqueue_with(const std::function<void()>& enqueue) { enqueue(); }

  // Makes every pending and later call fail with Error{kAborted}. Callable
  // from any thread, at most once meaningfully (later calls are no-ops). May
  // itself block inside the library (NCCL); guard therefore runs it on a
  // sacrificial thread under the hard-exit deadline.
  virtual void abort() = 0;
};

// What a factory needs to connect one group.
struct BackendGroupSpec {
  std::string group_name;          // unique in the job; also the store prefix
  std::vector<int> member_ranks;   // global ranks, ascending; group rank = index
  int global_rank = -1;            // this process; REQUIRES: in member_ranks
  std::chrono::milliseconds connect_timeout{30000};
};

class BackendFactory {
 public:
  virtual ~BackendFactory() = default;
  // Connects this process into the group through `store` (keys under
  // spec.group_name). Blocks at most spec.connect_timeout; throws
  // Error{kTimeout} naming the group and the ranks that never arrived.
  virtual std::unique_ptr<Backend> connect(Store& store, const BackendGroupSpec& spec) = 0;
};

}  // namespace lockstep
