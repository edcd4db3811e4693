#include "lockstep/nccl_backend.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backends/nccl/cuda_check.h"
#include "backends/nccl/nccl_types.h"
#include "backends/nccl/unique_id.h"
#include "lockstep/assert.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

using cuda_detail::check_cuda;
using cuda_detail::check_nccl;
// Device (or managed) memory goes to NCCL as is; anything else is host memory
// and is staged (a host pointer handed to NCCL would fault on the device, far
// from its cause).
using cuda_detail::is_device_pointer;
using Clock = std::chrono::steady_clock;

constexpr char kUniqueIdKey[] = "nccl_unique_id";
constexpr char kArrivedKeyPrefix[] = "nccl_arrived/";

// Spin briefly, then sleep: see kNcclSpinPolls.
void pause_between_polls(int& polls) {
  if (polls++ < kNcclSpinPolls) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(kNcclPollInterval);
  }
}

std::string ms_text(std::chrono::milliseconds timeout) {
  return std::to_string(timeout.count()) + " ms";
}

// Non-blocking communicators report asynchronous failures here; a remote
// error means a peer went away, anything else is our side's backend failure.
ErrorCode code_for_async(ncclResult_t status) {
  return status == ncclRemoteError ? ErrorCode::kPeerFailure : ErrorCode::kBackend;
}

// What the backend shares with the probes of its stream-ordered calls: a
// probe may outlive the backend (the tracker drops it later), so the
// communicator handle, the lock that keeps abort() from freeing it under a
// call, and the completion events live here.
struct CommShared {
  CommShared(ncclComm_t communicator, int device) : comm(communicator), device_index(device) {}
  ~CommShared() {
    for (cudaEvent_t event : free_events) cudaEventDestroy(event);
  }
  CommShared(const CommShared&) = delete;
  CommShared& operator=(const CommShared&) = delete;

  // A completion event from the pool; Error{kBackend} past kNcclEventsInFlightMax.
  cudaEvent_t take_event(const std::string& where) {
    const std::lock_guard lock(pool_mu);
    if (!free_events.empty()) {
      cudaEvent_t event = free_events.back();
      free_events.pop_back();
      ++events_out;
      return event;
    }
    if (events_out >= kNcclEventsInFlightMax) {
      throw Error(ErrorCode::kBackend, where + ": more than " + std::to_string(kNcclEventsInFlightMax) +
                                           " stream-ordered calls in flight");
    }
    cudaEvent_t event = nullptr;
    check_cuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "create completion event");
    ++events_out;
    return event;
  }
  void give_event(cudaEvent_t event) {
    const std::lock_guard lock(pool_mu);
    free_events.push_back(event);
    --events_out;
  }

  // Shared: a short non-blocking NCCL/CUDA sequence (the comm thread, the
  // tracker's poller). Unique: abort and destruction, which free `comm`.
  std::shared_mutex mu;
  // Held by the comm thread from an NCCL call until its wait ends. On a
  // non-blocking communicator ncclCommGetAsyncError also completes the
  // call's pending group job, so a second thread asking meanwhile would
  // complete it twice (seen on 2×H200: "unknown result code"); the poller
  // only asks when it can take this lock, and reads the event alone if not.
  std::mutex calls_mu;
  ncclComm_t comm;
  std::atomic<bool> aborted{false};
  const int device_index;
  std::mutex pool_mu;
  std::vector<cudaEvent_t> free_events;
  std::size_t events_out = 0;
};

// Completion of a stream-ordered call: its event ran and the communicator
// reports no asynchronous error. Polled on the tracker's thread.
class NcclEventProbe final : public CompletionProbe {
 public:
  NcclEventProbe(std::shared_ptr<CommShared> shared, cudaEvent_t event)
      : shared_(std::move(shared)), event_(event) {}
  ~NcclEventProbe() override { shared_->give_event(event_); }
  NcclEventProbe(const NcclEventProbe&) = delete;
  NcclEventProbe& operator=(const NcclEventProbe&) = delete;

  State poll(std::string& error) override {
    const std::shared_lock lock(shared_->mu, std::try_to_lock);
    if (!lock.owns_lock() || shared_->aborted.load()) {
      error = "communicator aborted";
      return State::kFailed;
    }
    cudaSetDevice(shared_->device_index);  // the poller thread starts on device 0
    if (const std::unique_lock calls(shared_->calls_mu, std::try_to_lock); calls.owns_lock()) {
      ncclResult_t async = ncclSuccess;
      const ncclResult_t query = ncclCommGetAsyncError(shared_->comm, &async);
      if (query != ncclSuccess) async = query;
      if (async != ncclSuccess && async != ncclInProgress) {
        error = std::string("communicator error ") + ncclGetErrorString(async);
        return State::kFailed;
      }
    }
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaSuccess) return State::kDone;
    if (status == cudaErrorNotReady) return State::kPending;
    cudaGetLastError();
    error = std::string("completion event: ") + cudaGetErrorString(status);
    return State::kFailed;
  }

 private:
  std::shared_ptr<CommShared> shared_;
  cudaEvent_t event_;
};

class NcclBackendImpl final : public NcclBackend {
 public:
  NcclBackendImpl(ncclComm_t comm, int rank, int size, const NcclBackendOptions& options,
                  std::string group)
      : shared_(std::make_shared<CommShared>(comm, options.device_index)),
        rank_(rank),
        size_(size),
        device_index_(options.device_index),
        group_(std::move(group)),
        compute_stream_(static_cast<cudaStream_t>(options.compute_stream)) {
    try {
      // The blocking calls (p2p across the boundary, broadcasts, barriers)
      // run on a stream of the highest priority: on a GPU that also runs
      // other work (Stage 0's decoder), their blocks are scheduled first as
      // SMs free up instead of queueing behind a long kernel's blocks.
      int least_priority = 0;
      int greatest_priority = 0;
      check_cuda(cudaDeviceGetStreamPriorityRange(&least_priority, &greatest_priority), "stream priority range");
      check_cuda(cudaStreamCreateWithPriority(&comm_stream_, cudaStreamNonBlocking, greatest_priority),
                 "create comm stream");
      check_cuda(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming), "create event");
      check_cuda(cudaEventCreateWithFlags(&op_done_, cudaEventDisableTiming), "create event");
      check_cuda(cudaMalloc(&barrier_word_, sizeof(int)), "allocate barrier word");
      check_cuda(cudaMalloc(&staging_device_, kNcclStagingBytes), "allocate device staging");
      check_cuda(cudaMallocHost(&staging_host_, kNcclStagingBytes), "allocate pinned staging");
    } catch (const Error&) {
      release();
      throw;
    }
  }

  ~NcclBackendImpl() override {
    // Waits for a concurrent abort() or probe poll before freeing what they use.
    const std::unique_lock lock(shared_->mu);
    release();
  }

  NcclBackendImpl(const NcclBackendImpl&) = delete;
  NcclBackendImpl& operator=(const NcclBackendImpl&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }
  MemoryKind memory_kind() const override { return MemoryKind::kDevice; }
  bool broken() const override { return broken_.load(); }
  bool op_in_flight() const override { return in_flight_.load(); }
  void set_compute_stream(void* cuda_stream) override {
    compute_stream_ = static_cast<cudaStream_t>(cuda_stream);
  }

  bool stream_ordered() const override { return true; }

  // Straight onto the compute stream, as a model's own NCCL call would be:
  // no fork to the comm stream and back, so nothing but the sum itself sits
  // between the kernels before and after it.
  std::unique_ptr<CompletionProbe> enqueue_all_reduce(void* data, std::size_t count, DType dtype,
                                                      ReduceOp op, std::chrono::milliseconds timeout) override {
    require_usable("all_reduce");
    if (!is_device_pointer(data)) fail_invalid("all_reduce", "a stream-ordered call takes device memory only");
    const ncclDataType_t type = cuda_detail::nccl_dtype(dtype);
    const ncclRedOp_t reduce = cuda_detail::nccl_reduce_op(op);
    const Clock::time_point deadline = Clock::now() + timeout;
    const std::lock_guard calls(shared_->calls_mu);
    with_comm("all_reduce", [&] {
      check_cuda(cudaSetDevice(device_index_), "cudaSetDevice");
      return ncclAllReduce(data, data, count, type, reduce, shared_->comm, compute_stream_);
    });
    wait_enqueued("all_reduce", timeout, deadline);
    return record_completion("all_reduce");
  }

  std::unique_ptr<CompletionProbe> enqueue_marker() override {
    require_usable("marker");
    return record_completion("marker");
  }

  void enqueue_with(const std::function<void()>& enqueue) override {
    require_usable("graph launch");
    with_comm("graph launch", [&] {
      check_cuda(cudaSetDevice(device_index_), "cudaSetDevice");
      enqueue();
      return ncclSuccess;
    });
  }

  void broadcast(void* data, std::size_t count, DType dtype, int root,
                 std::chrono::milliseconds timeout) override {
    require_usable("broadcast");
    require_group_rank(root, "broadcast");
    const ncclDataType_t type = cuda_detail::nccl_dtype(dtype);
    const auto call = [&](void* buffer, std::size_t n, cudaStream_t stream) {
      return ncclBroadcast(buffer, buffer, n, type, root, shared_->comm, stream);
    };
    if (is_device_pointer(data)) {
      run_op("broadcast", timeout, [&](cudaStream_t stream) { return call(data, count, stream); });
      return;
    }
    staged_in_place("broadcast", rank_ == root ? data : nullptr, rank_ == root ? nullptr : data, count,
                    dtype_size_bytes(dtype), timeout, call);
  }

  void all_reduce(void* data, std::size_t count, DType dtype, ReduceOp op,
                  std::chrono::milliseconds timeout) override {
    require_usable("all_reduce");
    const ncclDataType_t type = cuda_detail::nccl_dtype(dtype);
    const ncclRedOp_t reduce = cuda_detail::nccl_reduce_op(op);
    const auto call = [&](void* buffer, std::size_t n, cudaStream_t stream) {
      return ncclAllReduce(buffer, buffer, n, type, reduce, shared_->comm, stream);
    };
    if (is_device_pointer(data)) {
      run_op("all_reduce", timeout, [&](cudaStream_t stream) { return call(data, count, stream); });
      return;
    }
    staged_in_place("all_reduce", data, data, count, dtype_size_bytes(dtype), timeout, call);
  }

  void all_gather(const void* in, void* out, std::size_t count, DType dtype,
                  std::chrono::milliseconds timeout) override {
    require_usable("all_gather");
    const bool on_device = is_device_pointer(in);
    if (on_device != is_device_pointer(out)) {
      fail_invalid("all_gather", "input and output must both be device or both be host memory");
    }
    if (!on_device) {
      staged_all_gather(in, out, count, dtype, timeout);
      return;
    }
    run_op("all_gather", timeout, [&](cudaStream_t stream) {
      return ncclAllGather(in, out, count, cuda_detail::nccl_dtype(dtype), shared_->comm, stream);
    });
  }

  // An all-reduce of one device word: NCCL has no barrier of its own.
  void barrier(std::chrono::milliseconds timeout) override {
    require_usable("barrier");
    run_op("barrier", timeout, [&](cudaStream_t stream) {
      return ncclAllReduce(barrier_word_, barrier_word_, 1, ncclInt32, ncclSum, shared_->comm, stream);
    });
  }

  void send(const void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
            std::chrono::milliseconds timeout) override {
    require_usable("send");
    require_p2p(peer, tag, "send");
    const auto call = [&](const void* buffer, std::size_t n, cudaStream_t stream) {
      return ncclSend(buffer, n, ncclUint8, peer, shared_->comm, stream);
    };
    if (is_device_pointer(data)) {
      run_op("send", timeout, [&](cudaStream_t stream) { return call(data, size_bytes, stream); });
      return;
    }
    staged_in_place("send", data, nullptr, size_bytes, 1, timeout, call);
  }

  void recv(void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
            std::chrono::milliseconds timeout) override {
    require_usable("recv");
    require_p2p(peer, tag, "recv");
    const auto call = [&](void* buffer, std::size_t n, cudaStream_t stream) {
      return ncclRecv(buffer, n, ncclUint8, peer, shared_->comm, stream);
    };
    if (is_device_pointer(data)) {
      run_op("recv", timeout, [&](cudaStream_t stream) { return call(data, size_bytes, stream); });
      return;
    }
    staged_in_place("recv", nullptr, data, size_bytes, 1, timeout, call);
  }

  void abort() override {
    if (aborted_.exchange(true)) return;
    broken_.store(true);
    shared_->aborted.store(true);
    // Blocks only for a current non-blocking NCCL call of the comm thread or
    // the poller; neither holds the lock while it waits.
    const std::unique_lock lock(shared_->mu);
    cudaSetDevice(device_index_);  // the sacrificial thread has no device yet
    ncclCommAbort(shared_->comm);  // may hang inside NCCL: guard bounds us with _exit
    shared_->comm = nullptr;
  }

 private:
  template <typename Enqueue>
  void run_op(const char* op, std::chrono::milliseconds timeout, Enqueue enqueue) {
    run_op(op, timeout, Clock::now() + timeout, enqueue, [](cudaStream_t) {});
  }

  // enqueue(comm stream) queues the NCCL call (and any upload before it);
  // after_enqueue(comm stream) queues what must follow it (a download) once
  // NCCL has finished enqueueing, which a non-blocking communicator may do
  // asynchronously.
  template <typename Enqueue, typename AfterEnqueue>
  void run_op(const char* op, std::chrono::milliseconds timeout, Clock::time_point deadline,
              Enqueue enqueue, AfterEnqueue after_enqueue) {
    const std::lock_guard calls(shared_->calls_mu);
    with_comm(op, [&] {
      check_cuda(cudaSetDevice(device_index_), "cudaSetDevice");
      check_cuda(cudaEventRecord(compute_ready_, compute_stream_), "record compute event");
      check_cuda(cudaStreamWaitEvent(comm_stream_, compute_ready_, 0), "comm waits compute");
      return enqueue(comm_stream_);
    });
    InFlight in_flight(in_flight_);
    wait_enqueued(op, timeout, deadline);
    with_comm(op, [&] {
      after_enqueue(comm_stream_);
      check_cuda(cudaEventRecord(op_done_, comm_stream_), "record completion event");
      check_cuda(cudaStreamWaitEvent(compute_stream_, op_done_, 0), "compute waits comm");
      return ncclSuccess;
    });
    wait_completed(op, timeout, deadline);
  }

  // An event from the pool recorded on the compute stream, as a probe; null
  // while the stream is being captured (the call runs with each replay).
  std::unique_ptr<CompletionProbe> record_completion(const char* op) {
    std::unique_ptr<CompletionProbe> probe;
    with_comm(op, [&] {
      cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
      check_cuda(cudaStreamIsCapturing(compute_stream_, &capture), "query capture status");
      if (capture != cudaStreamCaptureStatusNone) return ncclSuccess;
      cudaEvent_t event = shared_->take_event(context(op));
      probe = std::make_unique<NcclEventProbe>(shared_, event);  // gives the event back on any exit
      check_cuda(cudaEventRecord(event, compute_stream_), "record completion event");
      return ncclSuccess;
    });
    return probe;
  }

  // A host buffer travels through the staging pair one piece at a time, each
  // piece one NCCL call bounded by the op's single deadline: `source` (if
  // set) is uploaded before the call, the result downloaded into
  // `destination` (if set) after it. Piece sizes depend only on count and
  // element size, so every rank cuts alike.
  template <typename Call>
  void staged_in_place(const char* op, const void* source, void* destination, std::size_t count,
                       std::size_t element_bytes, std::chrono::milliseconds timeout, Call call) {
    LOCKSTEP_ASSERT(element_bytes > 0 && element_bytes <= kNcclStagingBytes);
    const std::size_t piece_max = kNcclStagingBytes / element_bytes;
    const Clock::time_point deadline = Clock::now() + timeout;
    for (std::size_t first = 0; first < count; first += piece_max) {
      const std::size_t n = std::min(piece_max, count - first);
      const std::size_t piece_bytes = n * element_bytes;
      const std::size_t offset = first * element_bytes;
      if (source != nullptr) std::memcpy(staging_host_, static_cast<const unsigned char*>(source) + offset, piece_bytes);
      run_op(op, timeout, deadline,
             [&](cudaStream_t stream) {
               if (source != nullptr) copy_async(staging_device_, staging_host_, piece_bytes, stream, "upload");
               return call(staging_device_, n, stream);
             },
             [&](cudaStream_t stream) {
               if (destination != nullptr) copy_async(staging_host_, staging_device_, piece_bytes, stream, "download");
             });
      if (destination != nullptr) {
        std::memcpy(static_cast<unsigned char*>(destination) + offset, staging_host_, piece_bytes);
      }
    }
  }

  // Pieces of every rank's input: the staging holds one input piece and the
  // size() gathered pieces after it; each lands at its rank's offset in out.
  void staged_all_gather(const void* in, void* out, std::size_t count, DType dtype,
                         std::chrono::milliseconds timeout) {
    const std::size_t element_bytes = dtype_size_bytes(dtype);
    const std::size_t piece_max = kNcclStagingBytes / (element_bytes * (static_cast<std::size_t>(size_) + 1));
    if (piece_max == 0) fail_invalid("all_gather", "group too large for host staging; pass device buffers");
    const Clock::time_point deadline = Clock::now() + timeout;
    const auto* in_bytes = static_cast<const unsigned char*>(in);
    auto* out_bytes = static_cast<unsigned char*>(out);
    auto* device = static_cast<unsigned char*>(staging_device_);
    auto* host = static_cast<unsigned char*>(staging_host_);
    for (std::size_t first = 0; first < count; first += piece_max) {
      const std::size_t n = std::min(piece_max, count - first);
      const std::size_t piece_bytes = n * element_bytes;
      std::memcpy(host, in_bytes + first * element_bytes, piece_bytes);
      run_op("all_gather", timeout, deadline,
             [&](cudaStream_t stream) {
               copy_async(device, host, piece_bytes, stream, "upload");
               return ncclAllGather(device, device + piece_bytes, n, cuda_detail::nccl_dtype(dtype), shared_->comm,
                                    stream);
             },
             [&](cudaStream_t stream) {
               copy_async(host + piece_bytes, device + piece_bytes, piece_bytes * size_, stream, "download");
             });
      for (int r = 0; r < size_; ++r) {
        std::memcpy(out_bytes + (static_cast<std::size_t>(r) * count + first) * element_bytes,
                    host + piece_bytes * (1 + static_cast<std::size_t>(r)), piece_bytes);
      }
    }
  }

  static void copy_async(void* to, const void* from, std::size_t size_bytes, cudaStream_t stream,
                         const char* what) {
    check_cuda(cudaMemcpyAsync(to, from, size_bytes, cudaMemcpyDefault, stream), what);
  }

  // Marks the span between enqueue and the end of the wait, on every exit path.
  class InFlight {
   public:
    explicit InFlight(std::atomic<bool>& flag) : flag_(flag) { flag_.store(true); }
    ~InFlight() { flag_.store(false); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    std::atomic<bool>& flag_;
  };

  // Runs a short non-blocking NCCL/CUDA sequence while abort() cannot free the
  // communicator. Never waits for the lock: if abort() holds it, the op is over.
  template <typename Call>
  void with_comm(const char* op, Call call) {
    const std::shared_lock lock(shared_->mu, std::try_to_lock);
    if (!lock.owns_lock() || aborted_.load()) fail_aborted(op);
    ncclResult_t status = ncclSuccess;
    try {
      status = call();
    } catch (const Error&) {
      broken_.store(true);
      throw;
    }
    if (status != ncclSuccess && status != ncclInProgress) {
      broken_.store(true);
      throw Error(ErrorCode::kBackend, context(op) + ": " + ncclGetErrorString(status));
    }
  }

  // A non-blocking communicator may still be enqueueing (ncclInProgress).
  void wait_enqueued(const char* op, std::chrono::milliseconds timeout,
                     Clock::time_point deadline) {
    int polls = 0;
    while (true) {
      ncclResult_t async = ncclSuccess;
      with_comm(op, [&] { return ncclCommGetAsyncError(shared_->comm, &async); });
      if (async == ncclSuccess) return;
      if (async != ncclInProgress) fail_async(op, async);
      if (Clock::now() >= deadline) fail_timeout(op, timeout, "while enqueueing");
      pause_between_polls(polls);
    }
  }

  void wait_completed(const char* op, std::chrono::milliseconds timeout,
                      Clock::time_point deadline) {
    int polls = 0;
    while (true) {
      cudaError_t query = cudaSuccess;
      ncclResult_t async = ncclSuccess;
      with_comm(op, [&] {
        query = cudaEventQuery(op_done_);
        return ncclCommGetAsyncError(shared_->comm, &async);
      });
      if (async != ncclSuccess && async != ncclInProgress) fail_async(op, async);
      if (query == cudaSuccess) return;
      if (query != cudaErrorNotReady) {
        broken_.store(true);
        check_cuda(query, (context(op) + ": completion event").c_str());
      }
      if (Clock::now() >= deadline) fail_timeout(op, timeout, "waiting for completion");
      pause_between_polls(polls);
    }
  }

  // Abort rather than finalize: every successful op has completed already, and
  // abort never waits on a peer, so destruction cannot hang on one.
  void release() {
    cudaSetDevice(device_index_);
    shared_->aborted.store(true);  // outstanding probes report failure, never touch comm
    if (shared_->comm != nullptr) ncclCommAbort(shared_->comm);
    shared_->comm = nullptr;
    if (barrier_word_ != nullptr) cudaFree(barrier_word_);
    if (staging_device_ != nullptr) cudaFree(staging_device_);
    if (staging_host_ != nullptr) cudaFreeHost(staging_host_);
    if (op_done_ != nullptr) cudaEventDestroy(op_done_);
    if (compute_ready_ != nullptr) cudaEventDestroy(compute_ready_);
    if (comm_stream_ != nullptr) cudaStreamDestroy(comm_stream_);
  }

  std::string context(const char* op) const {
    return "nccl " + std::string(op) + " in group '" + group_ + "' (group rank " +
           std::to_string(rank_) + " of " + std::to_string(size_) + ")";
  }

  [[noreturn]] void fail_aborted(const char* op) const {
    throw Error(ErrorCode::kAborted,
                context(op) + ": backend aborted or broken by an earlier failure");
  }

  // The comm is left for abort(): freeing it here could block this thread.
  [[noreturn]] void fail_timeout(const char* op, std::chrono::milliseconds timeout,
                                 const char* where) {
    broken_.store(true);
    throw Error(ErrorCode::kTimeout,
                context(op) + ": not done within " + ms_text(timeout) + " (" + where + ")");
  }

  [[noreturn]] void fail_async(const char* op, ncclResult_t async) {
    broken_.store(true);
    throw Error(code_for_async(async),
                context(op) + ": communicator error " + ncclGetErrorString(async));
  }

  // Argument errors break the backend too: the Backend contract is that any
  // throw leaves it broken for good.
  [[noreturn]] void fail_invalid(const char* op, const std::string& detail) {
    broken_.store(true);
    throw Error(ErrorCode::kInvalidArgument, context(op) + ": " + detail);
  }

  // A rank whose backend failed never calls into NCCL again (SPEC §4C).
  void require_usable(const char* op) const {
    if (broken_.load()) fail_aborted(op);
  }

  void require_group_rank(int peer, const char* op) {
    if (peer >= 0 && peer < size_) return;
    fail_invalid(op,
                 "rank " + std::to_string(peer) + " outside [0, " + std::to_string(size_) + ")");
  }

  void require_p2p(int peer, std::uint32_t tag, const char* op) {
    require_group_rank(peer, op);
    if (peer == rank_) {
      fail_invalid(op,
                   std::string("peer is this rank; a blocking self-") + op + " never completes");
    }
    if (tag != 0) {
      fail_invalid(op,
                   "tag " + std::to_string(tag) +
                       " unsupported; NCCL matches p2p messages in FIFO order per peer, use tag 0");
    }
  }

  const std::shared_ptr<CommShared> shared_;  // the communicator, its lock, the event pool
  const int rank_;
  const int size_;
  const int device_index_;
  const std::string group_;
  std::atomic<bool> broken_{false};
  std::atomic<bool> aborted_{false};
  std::atomic<bool> in_flight_{false};
  cudaStream_t compute_stream_;  // nullptr: the legacy default stream
  cudaStream_t comm_stream_ = nullptr;
  cudaEvent_t compute_ready_ = nullptr;
  cudaEvent_t op_done_ = nullptr;
  void* barrier_word_ = nullptr;
  void* staging_device_ = nullptr;  // kNcclStagingBytes each
  void* staging_host_ = nullptr;    // pinned, so copies are truly asynchronous
};

int group_rank_of(const BackendGroupSpec& spec) {
  for (std::size_t i = 0; i < spec.member_ranks.size(); ++i) {
    if (spec.member_ranks[i] == spec.global_rank) return static_cast<int>(i);
  }
  throw Error(ErrorCode::kInvalidArgument,
              "nccl connect of group '" + spec.group_name + "': global rank " +
                  std::to_string(spec.global_rank) + " is not a member");
}

ncclUniqueId exchange_unique_id(Store& store, const BackendGroupSpec& spec, int group_rank,
                                std::chrono::milliseconds timeout) {
  return cuda_detail::exchange_unique_id(
      store, spec.group_name + "/" + kUniqueIdKey, group_rank == 0, timeout,
      "nccl connect of group '" + spec.group_name + "' (global rank " + std::to_string(spec.global_rank) + ")",
      "group rank 0 (global rank " + std::to_string(spec.member_ranks.front()) + ")");
}

// Names the members that never announced themselves, for the timeout message.
std::string missing_members(Store& store, const BackendGroupSpec& spec) {
  std::string missing;
  for (int rank : spec.member_ranks) {
    const std::string key = spec.group_name + "/" + kArrivedKeyPrefix + std::to_string(rank);
    if (store.check({key})) continue;
    missing += (missing.empty() ? "" : ", ") + std::to_string(rank);
  }
  return missing.empty() ? "none (all arrived; NCCL transport setup stalled)" : missing;
}

ncclComm_t init_communicator(Store& store, const BackendGroupSpec& spec, int group_rank,
                             const ncclUniqueId& id, const std::string& comm_name,
                             Clock::time_point deadline) {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  config.commName = comm_name.c_str();
  ncclComm_t comm = nullptr;
  check_nccl(ncclCommInitRankConfig(&comm, static_cast<int>(spec.member_ranks.size()), id,
                                    group_rank, &config),
             "ncclCommInitRankConfig");
  ncclResult_t state = ncclInProgress;
  while (true) {
    const ncclResult_t query = ncclCommGetAsyncError(comm, &state);
    if (query != ncclSuccess) state = query;
    if (state != ncclInProgress || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(kNcclPollInterval);
  }
  if (state == ncclSuccess) return comm;
  ncclCommAbort(comm);
  const std::string where = "nccl connect of group '" + spec.group_name + "' (global rank " +
                            std::to_string(spec.global_rank) + ")";
  if (state == ncclInProgress) {
    throw Error(ErrorCode::kTimeout,
                where + ": init not complete within " + ms_text(spec.connect_timeout) +
                    "; members that never arrived: " + missing_members(store, spec));
  }
  throw Error(code_for_async(state), where + ": init failed: " + ncclGetErrorString(state));
}

}  // namespace

NcclBackendFactory::NcclBackendFactory(NcclBackendOptions options) : options_(std::move(options)) {}

std::unique_ptr<Backend> NcclBackendFactory::connect(Store& store, const BackendGroupSpec& spec) {
  return connect_nccl(store, spec);
}

std::unique_ptr<NcclBackend> NcclBackendFactory::connect_nccl(Store& store,
                                                              const BackendGroupSpec& spec) {
  const int group_rank = group_rank_of(spec);
  if (spec.connect_timeout.count() <= 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "nccl connect of group '" + spec.group_name + "': connect_timeout must be > 0");
  }
  const Clock::time_point deadline = Clock::now() + spec.connect_timeout;
  check_cuda(cudaSetDevice(options_.device_index), "cudaSetDevice");
  store.set(spec.group_name + "/" + kArrivedKeyPrefix + std::to_string(spec.global_rank), Bytes{1});
  // The id wait and the NCCL init share one deadline: connect_timeout in all.
  const auto id_timeout =
      std::max(std::chrono::milliseconds(0),
               std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  const ncclUniqueId id = exchange_unique_id(store, spec, group_rank, id_timeout);
  const std::string comm_name = options_.comm_name_prefix + ":" + spec.group_name;
  ncclComm_t comm = init_communicator(store, spec, group_rank, id, comm_name, deadline);
  return std::make_unique<NcclBackendImpl>(comm, group_rank,
                                           static_cast<int>(spec.member_ranks.size()), options_,
                                           spec.group_name);
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: report zero, keep no sticky error
    return 0;
  }
  return count;
}

std::string nccl_cuda_versions() {
  int nccl_runtime = 0;
  ncclGetVersion(&nccl_runtime);
  int cuda_runtime = 0;
  cudaRuntimeGetVersion(&cuda_runtime);
  int driver = 0;
  cudaDriverGetVersion(&driver);
  return "NCCL " + std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + "." +
         std::to_string(NCCL_PATCH) + " (runtime " + std::to_string(nccl_runtime) +
         "), CUDA runtime " + std::to_string(cuda_runtime) + ", driver " + std::to_string(driver);
}

}  // namespace lockstep
