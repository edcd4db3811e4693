// lockstep_gpu_probe: prints the CUDA devices and library versions, then times
// the collective sequence of one 14B-shaped TP step (per layer, as the
// reference models issue it: one f32 [2 · 2160] QK-norm sum and two bf16
// [1, 2160, 5120] all-reduces; 40 layers) on
// a one-rank communicator, raw NCCL (all enqueued, one wait) against the
// lockstep NcclBackend (each op waited with polling), and the CUDA model's
// dit14b-layer denoise call eager and graph-captured. Not a test: numbers for
// the lead, measured on the GPU machine.
//
// Usage: lockstep_gpu_probe [--steps N] [--model-calls N]
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/cuda_model.h"
#include "lockstep/error.h"
#include "lockstep/model_config.h"
#include "lockstep/nccl_backend.h"
#include "lockstep/reference_model.h"

namespace lockstep {
namespace {

constexpr int kLayers14b = 40;
constexpr std::size_t kTokens = 2160;
constexpr std::size_t kDim = 5120;
constexpr int kWarmupSteps = 3;
constexpr std::chrono::milliseconds kOpTimeout{30000};

struct ProbeArgs {
  int steps = 20;
  int model_calls = 10;
};

void require(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(status));
    std::exit(1);
  }
}

void require(ncclResult_t status, const char* what) {
  if (status != ncclSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, ncclGetErrorString(status));
    std::exit(1);
  }
}

ProbeArgs parse(int argc, char** argv) {
  ProbeArgs args;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--steps") == 0) {
      args.steps = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--model-calls") == 0) {
      args.model_calls = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: lockstep_gpu_probe [--steps N] [--model-calls N]\n");
      std::exit(2);
    }
  }
  return args;
}

void print_devices(int count) {
  std::printf("%s\n", nccl_cuda_versions().c_str());
  for (int device = 0; device < count; ++device) {
    cudaDeviceProp prop{};
    require(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    std::printf("device %d: %s, sm_%d%d, %d SMs, %.1f GiB\n", device, prop.name, prop.major,
                prop.minor, prop.multiProcessorCount,
                static_cast<double>(prop.totalGlobalMem) / (1u << 30));
  }
}

struct StepBuffers {
  void* big = nullptr;    // bf16 [kTokens × kDim]
  void* small = nullptr;  // f32 [2 · kTokens]: Σq² and Σk²
  StepBuffers() {
    require(cudaMalloc(&big, kTokens * kDim * 2), "cudaMalloc big");
    require(cudaMalloc(&small, 2 * kTokens * sizeof(float)), "cudaMalloc small");
    require(cudaMemset(big, 0, kTokens * kDim * 2), "cudaMemset");
    require(cudaMemset(small, 0, 2 * kTokens * sizeof(float)), "cudaMemset");
  }
  ~StepBuffers() {
    cudaFree(big);
    cudaFree(small);
  }
};

// Milliseconds per step of `run_step`, after warm-up; `finish` waits for the device.
double time_steps(int steps, const std::function<void()>& run_step,
                  const std::function<void()>& finish) {
  for (int i = 0; i < kWarmupSteps; ++i) run_step();
  finish();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) run_step();
  finish();
  const std::chrono::duration<double, std::milli> elapsed =
      std::chrono::steady_clock::now() - start;
  return elapsed.count() / steps;
}

double time_raw_nccl(int steps, StepBuffers& buffers) {
  ncclComm_t comm = nullptr;
  const int devices[1] = {0};
  require(ncclCommInitAll(&comm, 1, devices), "ncclCommInitAll");
  cudaStream_t stream = nullptr;
  require(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  const double ms = time_steps(
      steps,
      [&] {
        for (int layer = 0; layer < kLayers14b; ++layer) {
          require(ncclAllReduce(buffers.small, buffers.small, 2 * kTokens, ncclFloat32, ncclSum,
                                comm, stream),
                  "tiny");
          for (int block = 0; block < 2; ++block) {
            require(ncclAllReduce(buffers.big, buffers.big, kTokens * kDim, ncclBfloat16, ncclSum,
                                  comm, stream),
                    "big");
          }
        }
      },
      [&] { require(cudaStreamSynchronize(stream), "cudaStreamSynchronize"); });
  cudaStreamDestroy(stream);
  ncclCommDestroy(comm);
  return ms;
}

double time_backend(int steps, StepBuffers& buffers, Store& store) {
  NcclBackendFactory factory(NcclBackendOptions{});
  BackendGroupSpec spec;
  spec.group_name = "probe";
  spec.member_ranks = {0};
  spec.global_rank = 0;
  auto backend = factory.connect_nccl(store, spec);
  return time_steps(
      steps,
      [&] {
        for (int layer = 0; layer < kLayers14b; ++layer) {
          backend->all_reduce(buffers.small, 2 * kTokens, DType::kF32, ReduceOp::kSum, kOpTimeout);
          for (int block = 0; block < 2; ++block) {
            backend->all_reduce(buffers.big, kTokens * kDim, DType::kBF16, ReduceOp::kSum,
                                kOpTimeout);
          }
        }
      },
      [] {});
}

double time_model(int calls, bool graph_capture) {
  const ModelConfig config = model_config_from_name("dit14b-layer");
  auto tp = make_single_rank_tp_ops();
  CudaModel model(config, kReferenceSeedDefault, *tp, CudaModelOptions{0, graph_capture});
  model.set_latents(
      std::vector<float>(static_cast<std::size_t>(config.tokens_per_chunk()) * config.dim, 0.01f));
  // Fill the window so every timed call attends over the full cache.
  while (model.cached_frames() < config.window_frames) {
    model.denoise(0.5f);
    model.commit_chunk();
  }
  return time_steps(
      calls, [&] { model.denoise(0.5f); }, [&] { model.read_output(std::chrono::minutes(5)); });
}

// A Store for one process: the probe's single-rank communicator needs no peer.
class LocalStore final : public Store {
 public:
  void set(const std::string& key, const Bytes& value) override { values_[key] = value; }
  Bytes get(const std::string& key, std::chrono::milliseconds) override { return values_.at(key); }
  bool check(const std::vector<std::string>& keys) override {
    for (const auto& key : keys) {
      if (values_.count(key) == 0) return false;
    }
    return true;
  }
  std::string describe() const override { return "probe-local"; }

 private:
  std::map<std::string, Bytes> values_;
};

int run(const ProbeArgs& args) {
  const int count = cuda_device_count();
  if (count == 0) {
    std::printf("no CUDA device visible; nothing to time\n");
    return 0;
  }
  print_devices(count);
  require(cudaSetDevice(0), "cudaSetDevice");
  StepBuffers buffers;
  LocalStore store;
  const double raw_ms = time_raw_nccl(args.steps, buffers);
  const double backend_ms = time_backend(args.steps, buffers, store);
  std::printf(
      "TP step (40 layers x [f32[4320] + 2 x bf16[2160x5120]] all-reduce, 1 rank, %d steps)\n",
      args.steps);
  std::printf("  raw NCCL, enqueued then one wait : %9.3f ms/step\n", raw_ms);
  std::printf("  NcclBackend, each op waited     : %9.3f ms/step (%+.2f %%)\n", backend_ms,
              100.0 * (backend_ms / raw_ms - 1.0));
  if (args.model_calls > 0) {
    const double eager_ms = time_model(args.model_calls, false);
    const double graph_ms = time_model(args.model_calls, true);
    std::printf("dit14b-layer denoise call (N=2160, 12 cached frames, TP=1)\n");
    std::printf("  eager : %9.3f ms/call\n  graph : %9.3f ms/call\n", eager_ms, graph_ms);
  }
  return 0;
}

}  // namespace
}  // namespace lockstep

int main(int argc, char** argv) {
  try {
    return lockstep::run(lockstep::parse(argc, argv));
  } catch (const lockstep::Error& error) {
    std::fprintf(stderr, "lockstep_gpu_probe: %s\n", error.what());
    return 1;
  }
}
