// The NCCL backend: collectives among GPUs behind the Backend seam (backend.h).
//
// No CUDA or NCCL type appears here, so code built without CUDA may include
// this header; a CUDA stream travels as `void*` (a cudaStream_t).
//
// Design (each point is a rule of SPEC §4C):
//  - Communicators are non-blocking (ncclConfig_t::blocking = 0). Every wait
//    (init, enqueue, completion) is a bounded polling loop over
//    ncclCommGetAsyncError and cudaEventQuery; no call ever blocks in
//    cudaStreamSynchronize, so the watchdog thread can always act.
//  - Each communicator is bootstrapped through the rendezvous Store: group rank
//    0 calls ncclGetUniqueId and publishes it under "<group>/nccl_unique_id";
//    the others read it within the connect timeout. Groups are created one by
//    one in the caller's (registry) order. ncclCommSplit is NOT used: a split is
//    collective over every rank of the parent, including non-members, but the
//    BackendFactory seam is only called by a group's members; a per-group unique
//    id keeps the seam unchanged and costs one store round trip per group.
//  - The blocking collectives run on a dedicated communication stream.
//    Before each one the comm stream waits on an event recorded on the
//    compute stream (see set_compute_stream); after it, the compute stream
//    waits on the op's completion event, so device order holds even before
//    the host sees it. The stream-ordered all_reduce runs on the compute
//    stream itself (below).
//  - Host buffers work too, for the control traffic a mesh group carries
//    besides the model's tensors (payload broadcast, digest and fingerprint
//    all_gathers): they are staged through a pinned host buffer and a device
//    buffer of kNcclStagingBytes each, piece by piece, every piece one NCCL
//    call under the op's one deadline. Device pointers skip the staging.
//  - Buffers: the caller owns every buffer; the backend keeps no pointer after
//    a blocking call returns successfully. A stream-ordered call's buffer is
//    in use until its probe reports completion, and a captured call's for as
//    long as the graph is replayed. After a throw (timeout, abort) the device may
//    still be reading or writing the buffers of the failed call until abort()
//    has returned: the caller must keep them alive until then (crash-only: the
//    process exits through guard's fatal path, so in practice they live on).
//  - send/recv to one's own group rank is refused (Error{kInvalidArgument}):
//    NCCL pairs a self-send with a recv only inside one ncclGroupStart/End,
//    which two separate blocking calls can never form.
//  - Tags: NCCL has no tags; point-to-point messages between two ranks match in
//    FIFO order per (peer, direction). lockstep's ledger checks the order, so
//    send/recv accept only tag 0 and throw Error{kInvalidArgument} otherwise.
//  - The blocking calls wait until their collective completed (the Backend
//    contract); compute queued on the compute stream before a call still
//    overlaps it on the device. They are for control traffic.
//  - The stream-ordered all_reduce (Backend::enqueue_all_reduce, the model's
//    path) is enqueued on the compute stream itself, like a model's own NCCL
//    call, and returns at once with a probe over a pooled event recorded
//    after it; the probe also reads ncclCommGetAsyncError. Probes are polled
//    by guard's CompletionTracker on its thread, may outlive the backend
//    (they share the communicator state, and report failure once it is
//    aborted), and never block. Under CUDA-graph capture of the compute
//    stream (thread-local mode) the call is captured and has no probe.
//  - Destruction calls ncclCommAbort, never ncclCommFinalize: abort never
//    waits on a peer. Every blocking op has completed by then; the owner
//    waits for its stream-ordered calls first (rank_main.cc drains the
//    completion tracker before teardown).
//  - abort() sets the broken flag, then calls ncclCommAbort (which also ends
//    in-flight kernels). ncclCommRevoke (NCCL 2.28) is not used: it exists to
//    shrink and continue, and lockstep never rebuilds a broken group.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "lockstep/backend.h"

namespace lockstep {

// A wait first re-checks NCCL and CUDA state this many times with only a
// yield between checks (most collectives finish within tens of microseconds,
// and a sleep would add its own wake-up latency to each), then sleeps
// kNcclPollInterval between checks: short enough that an abort is noticed
// within a millisecond, long enough not to burn a core on a long wait.
inline constexpr int kNcclSpinPolls = 2000;
inline constexpr std::chrono::microseconds kNcclPollInterval{50};

// Size of each of the two staging buffers for host memory (see above).
inline constexpr std::size_t kNcclStagingBytes = std::size_t{4} << 20;

// Completion events of stream-ordered calls alive at once, per communicator
// (the tracker's lanes bound calls in flight far below this).
inline constexpr std::size_t kNcclEventsInFlightMax = 8192;

struct NcclBackendOptions {
  int device_index = 0;  // CUDA device this process drives (cudaSetDevice)
  // The stream (cudaStream_t) whose work collectives order against, as
  // set_compute_stream; nullptr = the legacy default stream. Borrowed: it
  // must outlive every backend this factory connects.
  void* compute_stream = nullptr;
  // Name given to NCCL for its logs (ncclConfig_t::commName); the group name is
  // appended.
  std::string comm_name_prefix = "lockstep";
};

class NcclBackend : public Backend {
 public:
  // Orders collectives after the work already queued on `cuda_stream` (a
  // cudaStream_t; nullptr = the legacy default stream) and the stream's later
  // work after each collective. Non-blocking. REQUIRES: the comm thread.
  virtual void set_compute_stream(void* cuda_stream) = 0;
  // True once any call failed or abort() ran. Thread-safe, non-blocking.
  virtual bool broken() const = 0;
  // True while a call has enqueued its work and is waiting for it to finish
  // (what an abort from another thread interrupts). Thread-safe, non-blocking.
  virtual bool op_in_flight() const = 0;
};

class NcclBackendFactory final : public BackendFactory {
 public:
  explicit NcclBackendFactory(NcclBackendOptions options);

  // Creates this rank's communicator for spec (see the design notes above).
  // Blocks at most spec.connect_timeout: throws Error{kTimeout} naming the group
  // and this rank when the unique id or the NCCL init does not arrive in time
  // (the half-built communicator is aborted first), Error{kBackend} on an NCCL
  // or CUDA failure, Error{kInvalidArgument} on a bad spec. Any thread.
  std::unique_ptr<Backend> connect(Store& store, const BackendGroupSpec& spec) override;
  std::unique_ptr<NcclBackend> connect_nccl(Store& store, const BackendGroupSpec& spec);

 private:
  NcclBackendOptions options_;
};

// Number of visible CUDA devices; 0 when there is no device or no driver
// (never throws, so tests can skip cleanly). Any thread.
int cuda_device_count();

// "NCCL 2.28.9 (runtime 2.28.9), CUDA runtime 13000, driver 13000" for logs and
// the parity record. Any thread; never throws.
std::string nccl_cuda_versions();

}  // namespace lockstep
