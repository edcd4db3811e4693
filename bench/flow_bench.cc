// Flow-layer benchmarks.
//  * BM_PipelineOverlap/D: a three-thread pipeline shaped like Stage 0 + mesh
//    (produce → D_in → "mesh" → D_out → decode/emit) with balanced sleeping
//    stages (so results do not depend on how many cores are free), reporting
//    period vs max(stage0, stage1) and the OverlapScore at queue depth D.
//  * BM_Denoise/model: one reference-model denoise call at TP = 1.
#include <benchmark/benchmark.h>

#include <chrono>
#include <thread>
#include <vector>

#include "lockstep/bounded_queue.h"
#include "lockstep/overlap_meter.h"
#include "lockstep/reference_model.h"

namespace lockstep {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kStageMs{4};
constexpr std::chrono::milliseconds kQueueTimeout{10'000};
constexpr int kChunks = 60;

struct Work {
  int chunk;
  double stage1_ms;
};

double elapsed_ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

OverlapSummary run_pipeline(std::size_t depth) {
  BoundedQueue<int> d_in("d_in", depth);
  BoundedQueue<Work> d_out("d_out", depth);
  std::thread producer([&] {
    for (int chunk = 0; chunk < kChunks; ++chunk) d_in.push(chunk, kQueueTimeout);
  });
  std::thread mesh([&] {
    for (int i = 0; i < kChunks; ++i) {
      const int chunk = d_in.pop(kQueueTimeout);
      const auto start = Clock::now();
      std::this_thread::sleep_for(kStageMs);
      d_out.push(Work{chunk, elapsed_ms(start)}, kQueueTimeout);
    }
  });
  OverlapMeter meter;
  for (int i = 0; i < kChunks; ++i) {
    const Work work = d_out.pop(kQueueTimeout);
    const auto start = Clock::now();
    std::this_thread::sleep_for(kStageMs);  // decode
    const double stage0_ms = elapsed_ms(start);
    const auto emitted_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch());
    meter.record({static_cast<std::uint64_t>(work.chunk), stage0_ms, work.stage1_ms, emitted_ns.count()});
  }
  producer.join();
  mesh.join();
  return meter.summary();
}

void BM_PipelineOverlap(benchmark::State& state) {
  OverlapSummary summary;
  for (auto _ : state) summary = run_pipeline(static_cast<std::size_t>(state.range(0)));
  state.counters["period_ms"] = summary.period_ms.median;
  state.counters["max_stage_ms"] = std::max(summary.stage0_ms.median, summary.stage1_ms.median);
  state.counters["sum_stage_ms"] = summary.stage0_ms.median + summary.stage1_ms.median;
  state.counters["overlap_score"] = summary.overlap_score.median;
  state.counters["mesh_idle_ms_p50"] = summary.mesh_idle_ms.median;
}
BENCHMARK(BM_PipelineOverlap)->DenseRange(1, 4)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

class IdentityOps final : public TensorParallelOps {
 public:
  void all_reduce_sum(float*, std::size_t) override {}
};

void BM_Denoise(benchmark::State& state, const char* model_name) {
  const ModelConfig config = model_config_from_name(model_name);
  IdentityOps ops;
  ReferenceModel model(config, 0, 1, kReferenceSeedDefault, ops);
  model.cache().init(0, 0, 0.0f);
  std::vector<float> x(static_cast<std::size_t>(config.tokens_per_chunk() * config.dim), 0.1f);
  for (int chunk = 0; chunk < config.window_frames / config.frames_per_chunk; ++chunk) {
    model.denoise(x, 0.5f);
    model.commit_chunk();  // attend over a full window
  }
  for (auto _ : state) model.denoise(x, 0.5f);
}
BENCHMARK_CAPTURE(BM_Denoise, tiny, "tiny")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Denoise, small, "small")->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lockstep

BENCHMARK_MAIN();
