#include "lockstep/nccl_backend.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backends/nccl/cuda_check.h"
#include "backends/nccl/nccl_types.h"
#include "lockstep/assert.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

using cuda_detail::check_cuda;
using cuda_detail::check_nccl;
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

class NcclBackendImpl final : public NcclBackend {
 public:
  NcclBackendImpl(ncclComm_t comm, int rank, int size, int device_index, std::string group)
      : comm_(comm),
        rank_(rank),
        size_(size),
        device_index_(device_index),
        group_(std::move(group)) {
    try {
      check_cuda(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking),
                 "create comm stream");
      check_cuda(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming), "create event");
      check_cuda(cudaEventCreateWithFlags(&op_done_, cudaEventDisableTiming), "create event");
      check_cuda(cudaMalloc(&barrier_word_, sizeof(int)), "allocate barrier word");
    } catch (const Error&) {
      release();
      throw;
    }
  }

  ~NcclBackendImpl() override {
    // Waits for a concurrent abort() to finish before freeing what it uses.
    std::lock_guard<std::mutex> lock(comm_mu_);
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

  void broadcast(void* data, std::size_t count, DType dtype, int root,
                 std::chrono::milliseconds timeout) override {
    require_usable("broadcast");
    require_group_rank(root, "broadcast");
    require_device_pointer(data, "broadcast");
    run_op("broadcast", timeout, [&](cudaStream_t stream) {
      return ncclBroadcast(data, data, count, cuda_detail::nccl_dtype(dtype), root, comm_, stream);
    });
  }

  void all_reduce(void* data, std::size_t count, DType dtype, ReduceOp op,
                  std::chrono::milliseconds timeout) override {
    require_usable("all_reduce");
    require_device_pointer(data, "all_reduce");
    run_op("all_reduce", timeout, [&](cudaStream_t stream) {
      return ncclAllReduce(data, data, count, cuda_detail::nccl_dtype(dtype),
                           cuda_detail::nccl_reduce_op(op), comm_, stream);
    });
  }

  void all_gather(const void* in, void* out, std::size_t count, DType dtype,
                  std::chrono::milliseconds timeout) override {
    require_usable("all_gather");
    require_device_pointer(in, "all_gather input");
    require_device_pointer(out, "all_gather output");
    run_op("all_gather", timeout, [&](cudaStream_t stream) {
      return ncclAllGather(in, out, count, cuda_detail::nccl_dtype(dtype), comm_, stream);
    });
  }

  // An all-reduce of one device word: NCCL has no barrier of its own.
  void barrier(std::chrono::milliseconds timeout) override {
    require_usable("barrier");
    run_op("barrier", timeout, [&](cudaStream_t stream) {
      return ncclAllReduce(barrier_word_, barrier_word_, 1, ncclInt32, ncclSum, comm_, stream);
    });
  }

  void send(const void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
            std::chrono::milliseconds timeout) override {
    require_usable("send");
    require_p2p(peer, tag, "send");
    require_device_pointer(data, "send");
    run_op("send", timeout, [&](cudaStream_t stream) {
      return ncclSend(data, size_bytes, ncclUint8, peer, comm_, stream);
    });
  }

  void recv(void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
            std::chrono::milliseconds timeout) override {
    require_usable("recv");
    require_p2p(peer, tag, "recv");
    require_device_pointer(data, "recv");
    run_op("recv", timeout, [&](cudaStream_t stream) {
      return ncclRecv(data, size_bytes, ncclUint8, peer, comm_, stream);
    });
  }

  void abort() override {
    if (aborted_.exchange(true)) return;
    broken_.store(true);
    // Blocks only for the comm thread's current non-blocking NCCL call; the
    // comm thread never holds the lock while it waits.
    std::lock_guard<std::mutex> lock(comm_mu_);
    cudaSetDevice(device_index_);  // the sacrificial thread has no device yet
    ncclCommAbort(comm_);          // may hang inside NCCL: guard bounds us with _exit
    comm_ = nullptr;
  }

 private:
  template <typename Enqueue>
  void run_op(const char* op, std::chrono::milliseconds timeout, Enqueue enqueue) {
    const Clock::time_point deadline = Clock::now() + timeout;
    with_comm(op, [&] {
      check_cuda(cudaSetDevice(device_index_), "cudaSetDevice");
      check_cuda(cudaEventRecord(compute_ready_, compute_stream_), "record compute event");
      check_cuda(cudaStreamWaitEvent(comm_stream_, compute_ready_, 0), "comm waits compute");
      return enqueue(comm_stream_);
    });
    InFlight in_flight(in_flight_);
    wait_enqueued(op, timeout, deadline);
    with_comm(op, [&] {
      check_cuda(cudaEventRecord(op_done_, comm_stream_), "record completion event");
      check_cuda(cudaStreamWaitEvent(compute_stream_, op_done_, 0), "compute waits comm");
      return ncclSuccess;
    });
    wait_completed(op, timeout, deadline);
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
    std::unique_lock<std::mutex> lock(comm_mu_, std::try_to_lock);
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
      with_comm(op, [&] { return ncclCommGetAsyncError(comm_, &async); });
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
        return ncclCommGetAsyncError(comm_, &async);
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
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
    if (barrier_word_ != nullptr) cudaFree(barrier_word_);
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

  // A host pointer handed to NCCL faults on the device, far from its cause.
  void require_device_pointer(const void* data, const char* op) {
    cudaPointerAttributes attributes{};
    const cudaError_t status = cudaPointerGetAttributes(&attributes, data);
    if (status == cudaSuccess &&
        (attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged)) {
      return;
    }
    cudaGetLastError();  // a failed query must not leave a sticky error behind
    fail_invalid(op, "buffer is not CUDA device memory (MemoryKind::kDevice required)");
  }

  std::mutex comm_mu_;  // guards comm_ against abort() from another thread
  ncclComm_t comm_;
  const int rank_;
  const int size_;
  const int device_index_;
  const std::string group_;
  std::atomic<bool> broken_{false};
  std::atomic<bool> aborted_{false};
  std::atomic<bool> in_flight_{false};
  cudaStream_t comm_stream_ = nullptr;
  cudaStream_t compute_stream_ = nullptr;  // legacy default stream until set
  cudaEvent_t compute_ready_ = nullptr;
  cudaEvent_t op_done_ = nullptr;
  void* barrier_word_ = nullptr;
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
  const std::string key = spec.group_name + "/" + kUniqueIdKey;
  ncclUniqueId id{};
  if (group_rank == 0) {
    check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(&id);
    store.set(key, Bytes(bytes, bytes + sizeof(id)));
    return id;
  }
  Bytes value;
  try {
    value = store.get(key, timeout);
  } catch (const Error& error) {
    if (error.code() != ErrorCode::kTimeout) throw;
    throw Error(ErrorCode::kTimeout, "nccl connect of group '" + spec.group_name +
                                         "' (global rank " + std::to_string(spec.global_rank) +
                                         "): group rank 0 (global rank " +
                                         std::to_string(spec.member_ranks.front()) +
                                         ") never published the unique id: " + error.what());
  }
  if (value.size() != sizeof(id)) {
    throw Error(ErrorCode::kBackend, "nccl connect of group '" + spec.group_name + "': key " + key +
                                         " holds " + std::to_string(value.size()) +
                                         " bytes, expected " + std::to_string(sizeof(id)));
  }
  std::memcpy(&id, value.data(), sizeof(id));
  return id;
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
                                           static_cast<int>(spec.member_ranks.size()),
                                           options_.device_index, spec.group_name);
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
