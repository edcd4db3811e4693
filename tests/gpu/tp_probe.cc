// lockstep_tp_probe: guarded vs raw NCCL on a 14B-shaped TP step, one process
// per GPU under `lockstep launch` (issue 16's proof). Per layer, as a
// Wan-2.1-14B-shaped TP block: a bf16 GEMM [2160 × 5120] · [5120 × 5120/P],
// one f32 all-reduce of 2·2160 (the QK-norm sums), then twice a GEMM
// [2160 × 5120/P] · [5120/P × 5120] followed by a bf16 all-reduce of
// [2160 × 5120]; 40 layers. Raw = the same kernels and ncclAllReduce
// enqueued on the same stream of a plain communicator; guarded = lockstep's
// Communicator (gate, ledger, flight recorder, watchdog) with the
// stream-ordered NcclBackend and the CompletionTracker. Rounds of each mode
// alternate in one process, eager and CUDA-graph replay, so every ratio
// compares like with like on the same machine. Rank 0 prints a table and one
// JSON line. Not a test: numbers for BENCHMARKS.md.
//
// Usage: lockstep launch --nproc P -- lockstep_tp_probe [--steps N] [--rounds N] [--layers N]
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backends/nccl/cuda_check.h"
#include "backends/nccl/unique_id.h"
#include "model/cuda/gemm.h"
#include "lockstep/communicator.h"
#include "lockstep/completion_tracker.h"
#include "lockstep/error.h"
#include "lockstep/flight_recorder.h"
#include "lockstep/guard_observer.h"
#include "lockstep/job_token.h"
#include "lockstep/nccl_backend.h"
#include "lockstep/rank_env.h"
#include "lockstep/watchdog.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
using cuda_detail::check_cublas;
using cuda_detail::check_cuda;
using cuda_detail::check_nccl;
using cuda_detail::exchange_unique_id;
using cuda_model::bf16;

constexpr int kTokens = 2160;
constexpr int kDim = 5120;
constexpr milliseconds kOpTimeout{60000};
constexpr milliseconds kStartup{120000};

struct Args {
  int steps = 10;
  int rounds = 6;
  int layers = 40;
};

Args parse(int argc, char** argv) {
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    const int value = std::atoi(argv[i + 1]);
    if (value < 1 || value > 1000) throw Error(ErrorCode::kInvalidArgument, std::string(argv[i]) + " must be in 1..1000");
    if (std::strcmp(argv[i], "--steps") == 0) {
      args.steps = value;
    } else if (std::strcmp(argv[i], "--rounds") == 0) {
      args.rounds = value;
    } else if (std::strcmp(argv[i], "--layers") == 0) {
      args.layers = value;
    } else {
      throw Error(ErrorCode::kInvalidArgument, "usage: lockstep_tp_probe [--steps N] [--rounds N] [--layers N]");
    }
  }
  return args;
}

template <typename T>
T* device_alloc(std::size_t count) {
  void* data = nullptr;
  check_cuda(cudaMalloc(&data, count * sizeof(T)), "cudaMalloc");
  check_cuda(cudaMemset(data, 0, count * sizeof(T)), "cudaMemset");
  return static_cast<T*>(data);
}

// One TP rank's buffers and kernels; `all_reduce(ptr, count, dtype)` is the
// mode under test.
struct Layer {
  int shard = 0;  // kDim / P
  bf16* x = nullptr;
  bf16* w1 = nullptr;
  bf16* w2 = nullptr;
  bf16* h = nullptr;
  bf16* out = nullptr;
  float* norm = nullptr;

  explicit Layer(int tp) : shard(kDim / tp) {
    x = device_alloc<bf16>(static_cast<std::size_t>(kTokens) * kDim);
    w1 = device_alloc<bf16>(static_cast<std::size_t>(kDim) * shard);
    w2 = device_alloc<bf16>(static_cast<std::size_t>(shard) * kDim);
    h = device_alloc<bf16>(static_cast<std::size_t>(kTokens) * shard);
    out = device_alloc<bf16>(static_cast<std::size_t>(kTokens) * kDim);
    norm = device_alloc<float>(2 * static_cast<std::size_t>(kTokens));
  }
  ~Layer() {
    for (void* p : {static_cast<void*>(x), static_cast<void*>(w1), static_cast<void*>(w2), static_cast<void*>(h),
                    static_cast<void*>(out), static_cast<void*>(norm)}) {
      cudaFree(p);
    }
  }
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  void step(cublasHandle_t blas, int layers, const std::function<void(void*, std::size_t, DType)>& all_reduce,
            bool with_gemms) const {
    const std::size_t big = static_cast<std::size_t>(kTokens) * kDim;
    for (int layer = 0; layer < layers; ++layer) {
      if (with_gemms) cuda_model::gemm_rm(blas, kTokens, shard, kDim, x, kDim, w1, shard, h, CUDA_R_16BF, shard);
      all_reduce(norm, 2 * static_cast<std::size_t>(kTokens), DType::kF32);
      for (int block = 0; block < 2; ++block) {
        if (with_gemms) cuda_model::gemm_rm(blas, kTokens, kDim, shard, h, shard, w2, kDim, out, CUDA_R_16BF, kDim);
        all_reduce(out, big, DType::kBF16);
      }
    }
  }
};

// The step sums f32 and bf16 only.
ncclDataType_t nccl_type(DType dtype) { return dtype == DType::kF32 ? ncclFloat32 : ncclBfloat16; }

// Rank 0 makes an NCCL id and publishes it under `key`; the others read it.
ncclUniqueId shared_unique_id(Store& store, int rank, const std::string& key) {
  return exchange_unique_id(store, key, rank == 0, kStartup, "tp_probe " + key, "rank 0");
}
double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

int run(const Args& args) {
  const RankEnv env = read_rank_env();
  std::unique_ptr<Store> store = join_job(open_store(env), {env.job_id, env.job_token, env.generation}, env.rank, kStartup);
  check_cuda(cudaSetDevice(env.local_rank), "cudaSetDevice");
  cudaStream_t stream = nullptr;
  check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cublasHandle_t blas = nullptr;
  check_cublas(cublasCreate(&blas), "cublasCreate");
  check_cublas(cublasSetStream(blas, stream), "cublasSetStream");
  void* workspace = nullptr;  // a fixed workspace: capture must not allocate
  constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;
  check_cuda(cudaMalloc(&workspace, kWorkspaceBytes), "cudaMalloc workspace");
  check_cublas(cublasSetWorkspace(blas, workspace, kWorkspaceBytes), "cublasSetWorkspace");
  const int tp = env.world_size;
  Layer layer(tp);

  // Raw: a plain communicator, its id passed through the job's store.
  ncclComm_t raw = nullptr;
  check_nccl(ncclCommInitRank(&raw, tp, shared_unique_id(*store, env.rank, "tp_probe/raw_id"), env.rank),
          "ncclCommInitRank");
  const auto raw_sum = [&](void* data, std::size_t count, DType dtype) {
    check_nccl(ncclAllReduce(data, data, count, nccl_type(dtype), ncclSum, raw, stream), "ncclAllReduce");
  };
  // A second raw communicator configured as lockstep's (blocking = 0), to
  // tell the communicator's mode from the guard's own cost.
  ncclComm_t nonblocking = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t init = ncclCommInitRankConfig(
      &nonblocking, tp, shared_unique_id(*store, env.rank, "tp_probe/nonblocking_id"), env.rank, &config);
  check_nccl(init, "ncclCommInitRankConfig");  // in progress is settled below
  const auto settle = [&] {
    ncclResult_t state = ncclInProgress;
    while (state == ncclInProgress) check_nccl(ncclCommGetAsyncError(nonblocking, &state), "ncclCommGetAsyncError");
    check_nccl(state, "non-blocking communicator");
  };
  settle();
  const auto nonblocking_sum = [&](void* data, std::size_t count, DType dtype) {
    const ncclResult_t status = ncclAllReduce(data, data, count, nccl_type(dtype), ncclSum, nonblocking, stream);
    check_nccl(status, "ncclAllReduce");
    settle();
  };

  // Guarded: what `lockstep run` builds for a mesh rank.
  FlightRecorder recorder;
  WatchdogOptions watchdog_options;
  watchdog_options.startup_deadline = kStartup;
  watchdog_options.steady_deadline = kOpTimeout;
  Watchdog watchdog(watchdog_options, [](const WatchdogFiring& firing) {
    std::fprintf(stderr, "lockstep_tp_probe: watchdog fired: %s\n", firing.message.c_str());
    std::_Exit(3);
  });
  watchdog.start();
  GuardObserver observers(recorder, &watchdog);
  GroupTable table(tp);
  std::vector<int> members(static_cast<std::size_t>(tp));
  for (int r = 0; r < tp; ++r) members[static_cast<std::size_t>(r)] = r;
  table.add("mesh", members);
  NcclBackendFactory factory(NcclBackendOptions{env.local_rank, stream, "tp-probe"});
  Communicator comm(CommunicatorOptions{env.rank, table, make_standard_phase_policy(), Phase::kGenerator, kStartup},
                    factory, *store, &observers);
  const auto on_failure = [](const Error& error) {
    std::fprintf(stderr, "lockstep_tp_probe: %s\n", error.what());
    std::_Exit(3);
  };
  CompletionTracker tracker(observers, on_failure);  // the default poll period, as `lockstep run`
  CompletionTrackerOptions slow_options;
  slow_options.poll_period = std::chrono::microseconds(200);
  CompletionTracker slow_tracker(observers, on_failure, slow_options);
  comm.set_completion_sink(&tracker);
  const auto guarded_sum = [&](void* data, std::size_t count, DType dtype) {
    comm.all_reduce_enqueue("mesh", data, count, dtype, ReduceOp::kSum, kOpTimeout);
  };

  // Graphs of one step each.
  const auto capture = [&](const std::function<void()>& body) {
    check_cuda(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "begin capture");
    body();
    cudaGraph_t graph = nullptr;
    check_cuda(cudaStreamEndCapture(stream, &graph), "end capture");
    cudaGraphExec_t exec = nullptr;
    check_cuda(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    cudaGraphDestroy(graph);
    return exec;
  };
  cudaGraphExec_t raw_graph = capture([&] { layer.step(blas, args.layers, raw_sum, true); });
  comm.begin_capture();
  cudaGraphExec_t guarded_graph = capture([&] { layer.step(blas, args.layers, guarded_sum, true); });
  const std::vector<Communicator::CapturedCall> captured = comm.end_capture();

  struct Mode {
    const char* name;
    std::function<void()> step;
    std::vector<double> ms;
  };
  std::vector<Mode> modes;
  // What an event per op costs on its own: raw NCCL, each sum followed by
  // an event record as the stream-ordered backend does (never queried).
  std::vector<cudaEvent_t> events(static_cast<std::size_t>(3 * args.layers));
  for (cudaEvent_t& event : events) check_cuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "event");
  std::size_t next_event = 0;
  const auto raw_sum_event = [&](void* data, std::size_t count, DType dtype) {
    raw_sum(data, count, dtype);
    check_cuda(cudaEventRecord(events[next_event++ % events.size()], stream), "cudaEventRecord");
  };
  modes.push_back({"raw eager", [&] { layer.step(blas, args.layers, raw_sum, true); }, {}});
  modes.push_back({"guarded eager", [&] { layer.step(blas, args.layers, guarded_sum, true); }, {}});
  modes.push_back({"raw eager + events", [&] { layer.step(blas, args.layers, raw_sum_event, true); }, {}});
  modes.push_back({"raw eager, blocking=0", [&] { layer.step(blas, args.layers, nonblocking_sum, true); }, {}});
  modes.push_back({"guarded eager, 200us poll",
                   [&] {
                     comm.set_completion_sink(&slow_tracker);
                     layer.step(blas, args.layers, guarded_sum, true);
                     comm.set_completion_sink(&tracker);
                   },
                   {}});
  modes.push_back({"raw graph", [&] { check_cuda(cudaGraphLaunch(raw_graph, stream), "launch"); }, {}});
  modes.push_back({"guarded graph",
                   [&] { comm.replay(captured, [&] { check_cuda(cudaGraphLaunch(guarded_graph, stream), "launch"); }); },
                   {}});
  modes.push_back({"raw all-reduces only", [&] { layer.step(blas, args.layers, raw_sum, false); }, {}});
  const auto finish = [&] {
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");  // the probe may wait: it times
    tracker.wait_lane(0, kOpTimeout);
    slow_tracker.wait_lane(0, kOpTimeout);
  };
  for (Mode& mode : modes) {  // warm-up
    mode.step();
    finish();
  }
  for (int round = 0; round < args.rounds; ++round) {
    for (Mode& mode : modes) {
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < args.steps; ++i) mode.step();
      finish();
      const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
      mode.ms.push_back(elapsed.count() / args.steps);
    }
  }
  if (env.rank == 0) {
    const double raw_eager = median(modes[0].ms), guarded_eager = median(modes[1].ms);
    const double raw_graph_ms = median(modes[5].ms), guarded_graph_ms = median(modes[6].ms);
    const double sums_ms = median(modes[7].ms);
    // NCCL's bus bandwidth of the [2160 × 5120] bf16 all-reduce (2 of the 3 per layer carry ~all bytes).
    const double big_bytes = 2.0 * kTokens * kDim;
    const double per_big_s = sums_ms / 1e3 / (2.0 * args.layers);
    const double busbw = big_bytes / per_big_s * 2.0 * (tp - 1) / tp / 1e9;
    std::printf("%s\n", nccl_cuda_versions().c_str());
    std::printf("TP=%d, %d layers x [GEMM, f32[%d] all-reduce, 2 x (GEMM, bf16[%dx%d] all-reduce)], "
                "%d rounds x %d steps, medians\n",
                tp, args.layers, 2 * kTokens, kTokens, kDim, args.rounds, args.steps);
    for (const Mode& mode : modes) std::printf("  %-22s %9.3f ms/step\n", mode.name, median(mode.ms));
    std::printf("  guarded/raw eager %.4f, guarded/raw graph %.4f, graph/eager (guarded) %.4f\n",
                guarded_eager / raw_eager, guarded_graph_ms / raw_graph_ms, guarded_graph_ms / guarded_eager);
    std::printf("  raw+events/raw eager %.4f, raw blocking=0/raw eager %.4f, guarded 200us poll/raw eager %.4f\n",
                median(modes[2].ms) / raw_eager, median(modes[3].ms) / raw_eager, median(modes[4].ms) / raw_eager);
    std::printf("  guarded/raw eager with the same communicator mode (blocking=0): %.4f\n",
                guarded_eager / median(modes[3].ms));
    std::printf("  all-reduce bf16[%dx%d]: %.3f ms each, bus bandwidth %.1f GB/s\n", kTokens, kDim, per_big_s * 1e3,
                busbw);
    std::printf("{\"tp\": %d, \"raw_eager_ms\": %.3f, \"guarded_eager_ms\": %.3f, \"raw_graph_ms\": %.3f, "
                "\"guarded_graph_ms\": %.3f, \"ratio_eager\": %.4f, \"ratio_graph\": %.4f, "
                "\"allreduce_ms\": %.4f, \"busbw_gbps\": %.1f}\n",
                tp, raw_eager, guarded_eager, raw_graph_ms, guarded_graph_ms, guarded_eager / raw_eager,
                guarded_graph_ms / raw_graph_ms, per_big_s * 1e3, busbw);
  }
  for (cudaEvent_t event : events) cudaEventDestroy(event);
  cudaGraphExecDestroy(raw_graph);
  cudaGraphExecDestroy(guarded_graph);
  watchdog.stop();
  ncclCommDestroy(raw);
  ncclCommAbort(nonblocking);
  return 0;
}

}  // namespace
}  // namespace lockstep

int main(int argc, char** argv) {
  try {
    return lockstep::run(lockstep::parse(argc, argv));
  } catch (const lockstep::Error& error) {
    std::fprintf(stderr, "lockstep_tp_probe: %s\n", error.what());
    return 1;
  }
}
