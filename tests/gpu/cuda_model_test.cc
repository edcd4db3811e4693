// The CUDA reference model against the CPU ReferenceModel (fp32) within bf16
// tolerance, across denoise steps, commits, ring eviction, a bias change and
// a recompute; and CUDA-graph capture on/off giving bit-identical outputs.
// Label gpu.
#include "lockstep/cuda_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "gpu/in_process_tp_ops.h"
#include "lockstep/digest.h"
#include "lockstep/error.h"
#include "lockstep/model_config.h"
#include "lockstep/reference_model.h"
#include "lockstep/tensor_parallel_ops.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kReadTimeout{60000};
// bf16 keeps 8 significant bits (relative step 2^-8 ≈ 0.4 %); GEMM inputs,
// attention probabilities and all-reduce partials in bf16 over a few layers
// and steps stay well inside 3 % of the output's norm.
constexpr double kRelativeTolerance = 3e-2;
constexpr int kChunks = 6;          // fills and rolls the ring of `tiny`
constexpr int kRecomputeChunk = 4;  // this chunk starts with a recompute
constexpr int kBiasChunk = 2;       // from here on cached positions get a bias
constexpr float kBias = -0.5f;
constexpr int kContextFrames = 2;
constexpr std::uint64_t kEpoch = 1;
const std::vector<float> kTimesteps = {0.9f, 0.5f, 0.1f};

std::vector<float> pseudo_random(std::size_t count, std::uint64_t salt) {
  std::vector<float> values(count);
  std::uint64_t state = 0x243F6A8885A308D3ull ^ salt;
  for (float& value : values) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    value = static_cast<float>(static_cast<std::int64_t>(state >> 33) % 2001 - 1000) / 1000.0f;
  }
  return values;
}

std::vector<float> latents_for(const ModelConfig& config, int chunk) {
  return pseudo_random(static_cast<std::size_t>(config.tokens_per_chunk()) * config.dim, chunk);
}

std::vector<float> context_for(const ModelConfig& config, int chunk) {
  return pseudo_random(
      static_cast<std::size_t>(kContextFrames) * config.tokens_per_frame * config.dim,
      1000 + chunk);
}

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0.0;
  double norm = 0.0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    diff += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    norm += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(diff / norm);
}

// One chunk on the CUDA model: optional recompute, bias, steps, commit.
std::vector<float> cuda_chunk(CudaModel& model, int chunk) {
  const ModelConfig& config = model.config();
  if (chunk == kRecomputeChunk) model.recompute(context_for(config, chunk));
  if (chunk == kBiasChunk) model.set_attention_bias(kBias);
  model.set_latents(latents_for(config, chunk));
  for (float t : kTimesteps) model.denoise(t);
  model.commit_chunk();
  return model.read_output(kReadTimeout);
}

// The same chunk on the CPU model (the mesh loop's part — the cache
// lifecycle — done by hand).
std::vector<float> cpu_chunk(ReferenceModel& model, int chunk) {
  const ModelConfig& config = model.config();
  if (chunk == kRecomputeChunk) model.recompute(context_for(config, chunk));
  if (chunk == kBiasChunk) model.cache().set_attention_bias(kBias);
  std::vector<float> x = latents_for(config, chunk);
  for (float t : kTimesteps) model.denoise(std::span<float>(x), t);
  model.commit_chunk();
  return x;
}

class SingleRankCpuOps final : public TensorParallelOps {
 public:
  void all_reduce_sum(float*, std::size_t) override {}  // a sum over one rank
};

class CudaModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaModelTest, MatchesTheCpuModelWithinBf16ToleranceAcrossChunks) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  const ModelConfig config = model_config_from_name(GetParam());
  auto tp = make_single_rank_tp_ops();
  CudaModel gpu(config, kReferenceSeedDefault, *tp, CudaModelOptions{});
  SingleRankCpuOps cpu_ops;
  ReferenceModel cpu(config, 0, 1, kReferenceSeedDefault, cpu_ops);
  cpu.cache().init(kEpoch, 0, 0.0f);
  for (int chunk = 0; chunk < kChunks; ++chunk) {
    const std::vector<float> got = cuda_chunk(gpu, chunk);
    const std::vector<float> want = cpu_chunk(cpu, chunk);
    EXPECT_LT(relative_error(got, want), kRelativeTolerance) << config.name << " chunk " << chunk;
    EXPECT_EQ(gpu.cached_frames(), cpu.cache().frames_held()) << config.name << " chunk " << chunk;
  }
}

TEST_P(CudaModelTest, GraphCaptureOnAndOffGiveIdenticalOutputs) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  const ModelConfig config = model_config_from_name(GetParam());
  auto tp = make_single_rank_tp_ops();
  CudaModel eager(config, kReferenceSeedDefault, *tp, CudaModelOptions{0, false});
  CudaModel captured(config, kReferenceSeedDefault, *tp, CudaModelOptions{0, true});
  EXPECT_FALSE(eager.graph_capture());
  EXPECT_TRUE(captured.graph_capture());
  for (int chunk = 0; chunk < kChunks; ++chunk) {
    EXPECT_EQ(cuda_chunk(eager, chunk), cuda_chunk(captured, chunk))
        << config.name << " chunk " << chunk;
  }
}

// Two TP shards (rank threads on one GPU, sums through the host) recombine to
// the single-rank model: the shard offsets of every weight are right, and the
// replicated x stays bit-identical across the ranks.
TEST_P(CudaModelTest, TwoTensorParallelShardsMatchTheCpuModel) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  const ModelConfig config = model_config_from_name(GetParam());
  constexpr int kTpSize = 2;
  testing::InProcessMesh mesh(kTpSize);
  testing::InProcessTpOps ops0(mesh, 0, kTpSize);
  testing::InProcessTpOps ops1(mesh, 1, kTpSize);
  CudaModel rank0(config, kReferenceSeedDefault, ops0, CudaModelOptions{});
  CudaModel rank1(config, kReferenceSeedDefault, ops1, CudaModelOptions{});
  SingleRankCpuOps cpu_ops;
  ReferenceModel cpu(config, 0, 1, kReferenceSeedDefault, cpu_ops);
  cpu.cache().init(kEpoch, 0, 0.0f);
  for (int chunk = 0; chunk < kChunks; ++chunk) {
    std::vector<float> outputs[kTpSize];
    std::string errors[kTpSize];
    CudaModel* ranks[kTpSize] = {&rank0, &rank1};
    std::vector<std::thread> threads;
    for (int r = 0; r < kTpSize; ++r) {
      threads.emplace_back([&, r] {
        try {
          outputs[r] = cuda_chunk(*ranks[r], chunk);
        } catch (const Error& error) {
          errors[r] = error.what();
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    ASSERT_EQ(errors[0] + errors[1], "");
    const std::vector<float>& out0 = outputs[0];
    const std::vector<float>& out1 = outputs[1];
    EXPECT_EQ(out0, out1) << config.name << " chunk " << chunk;
    EXPECT_LT(relative_error(out0, cpu_chunk(cpu, chunk)), kRelativeTolerance)
        << config.name << " chunk " << chunk;
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaModelTest, ::testing::Values("tiny", "small"));

template <typename Call>
ErrorCode code_of(Call call) {
  try {
    call();
  } catch (const Error& error) {
    return error.code();
  }
  return ErrorCode::kInternal;
}

TEST(CudaModel, RejectsWhatTheSpecForbids) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  const ModelConfig config = model_config_from_name("tiny");
  auto tp = make_single_rank_tp_ops();
  CudaModel model(config, kReferenceSeedDefault, *tp, CudaModelOptions{});
  EXPECT_EQ(code_of([&] { model.commit_chunk(); }), ErrorCode::kPlan);
  EXPECT_EQ(code_of([&] { model.set_latents(std::vector<float>(3)); }), ErrorCode::kSchema);
  const std::size_t frame = static_cast<std::size_t>(config.tokens_per_frame) * config.dim;
  EXPECT_EQ(
      code_of([&] { model.recompute(std::vector<float>(frame * (config.window_frames + 1))); }),
      ErrorCode::kSchema);
  EXPECT_EQ(code_of([&] { model.recompute({}); }), ErrorCode::kSchema);
  EXPECT_EQ(model.cached_frames(), 0);
}

// A TP ops object of any rank and size whose sums are never called here.
class ClaimedRankOps final : public CudaTensorParallelOps {
 public:
  ClaimedRankOps(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(void*, std::size_t, DType, void*) override { ADD_FAILURE() << "no sums expected"; }
  bool stream_ordered() const override { return true; }

 private:
  int rank_, size_;
};

// What the device generated is, bit for bit, the CPU generator's shard in
// bf16 storage, so the mesh's fingerprint check (H2) holds on NCCL meshes.
TEST_P(CudaModelTest, LoadedWeightsMatchTheCpuFingerprintOfBf16Storage) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  const ModelConfig config = model_config_from_name(GetParam());
  for (const auto& [rank, size] : {std::pair{0, 1}, std::pair{1, 2}}) {
    ClaimedRankOps ops(rank, size);
    CudaModel model(config, kReferenceSeedDefault, ops, CudaModelOptions{});
    DigestStream loaded;
    model.visit_weights([&](std::span<const std::uint8_t> piece) { loaded.update(piece); },
                        std::chrono::milliseconds(30000));
    EXPECT_EQ(loaded.digest(), weight_shard_fingerprint(config, kReferenceSeedDefault, rank, size,
                                                        WeightStorage::kBf16Matrices))
        << config.name << " shard " << rank << " of " << size;
  }
}

// A TP ops object that claims P = 3: `tiny` has 4 heads.
class ThreeRankOps final : public CudaTensorParallelOps {
 public:
  int rank() const override { return 0; }
  int size() const override { return 3; }
  void all_reduce_sum(void*, std::size_t, DType, void*) override {}
  bool stream_ordered() const override { return true; }
};

TEST(CudaModel, RefusesAMeshSizeThatDoesNotDivideTheHeads) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  ThreeRankOps ops;
  EXPECT_EQ(code_of([&] {
              CudaModel model(model_config_from_name("tiny"), kReferenceSeedDefault, ops, {});
            }),
            ErrorCode::kInvalidArgument);
}

TEST(CudaModel, RefusesGraphCaptureOverAllReducesThatWaitOnTheHost) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  testing::InProcessMesh mesh(1);
  testing::InProcessTpOps ops(mesh, 0, 1);
  ASSERT_FALSE(ops.stream_ordered());
  EXPECT_EQ(code_of([&] {
              CudaModel model(model_config_from_name("tiny"), kReferenceSeedDefault, ops,
                              CudaModelOptions{0, true});
            }),
            ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace lockstep
