// SPEC §8 targets for the wire layer, measured on a realistic envelope: the
// dit14b-layer chunk of docs/reference-model.md with a KV recompute, 20 meta
// keys and 4 tensors.
//   envelope preflight+encode+digest   <= 1 us, >= 10x faster than stable JSON
//   frame decode + validate            <= 1 us
#include <benchmark/benchmark.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "lockstep/digest.h"
#include "lockstep/envelope.h"
#include "lockstep/result.h"

namespace lockstep {
namespace {

constexpr std::uint32_t kFrames = 3;
constexpr std::uint32_t kTokensPerFrame = 720;
constexpr std::uint32_t kDim = 5120;
constexpr std::uint32_t kContextFrames = 12;
constexpr std::size_t kBf16Bytes = 2;

Meta realistic_meta() {
  Meta meta;
  meta.set("prompt", std::string("a red fox running through fresh snow at dusk"));
  meta.set("negative_prompt", std::string("blurry, low quality"));
  meta.set("seed", std::int64_t{1234});
  meta.set("guidance_scale", 5.0);
  meta.set("shift", 3.0);
  meta.set("fps", std::int64_t{16});
  meta.set("height", std::int64_t{480});
  meta.set("width", std::int64_t{832});
  meta.set("scene_id", std::int64_t{7});
  meta.set("stream_id", std::string("cam-0"));
  meta.set("hard_cut", false);
  meta.set("use_cfg", true);
  meta.set("sampler", std::string("flow_euler"));
  meta.set("denoise_strength", 0.85);
  meta.set("frame_range", std::vector<std::int64_t>{27, 30});
  meta.set("cond_weights", std::vector<double>{1.0, 0.5, 0.25});
  meta.set("lora_enabled", std::vector<bool>{true, false});
  meta.set("tags", std::vector<std::string>{"fox", "snow", "dusk"});
  meta.set("model", std::string("dit14b-layer"));
  meta.set("client_ts_us", std::int64_t{1732450000000000});
  return meta;
}

struct Fixture {
  std::vector<std::uint8_t> latents = std::vector<std::uint8_t>(kFrames * kTokensPerFrame * kDim * kBf16Bytes);
  std::vector<std::uint8_t> context =
      std::vector<std::uint8_t>(std::size_t{kContextFrames} * kTokensPerFrame * kDim * kBf16Bytes);
  std::vector<std::uint8_t> text_embeds = std::vector<std::uint8_t>(512 * 4096 * kBf16Bytes);
  std::vector<std::uint8_t> noise_seed = std::vector<std::uint8_t>(4 * 8);
  Envelope envelope;
  std::vector<TensorView> views;
  FrameContext context_v2{kProtocolVersionMax, 0, job_token_digest("bench-job", 0)};

  Fixture() {
    envelope.action = Action::kInfer;
    envelope.ids = CallIds{1001, 1000, 3};
    Plan plan;
    plan.plan_id = 1000;
    plan.num_denoise_steps = 4;
    plan.timesteps = {1000.0, 750.0, 500.0, 250.0};
    plan.do_kv_recompute = true;
    plan.attention_bias = -0.5;
    plan.expected_generator_calls = plan_generator_calls(4, true);
    envelope.plan = plan;
    envelope.geometry = Geometry{kFrames, kTokensPerFrame, kDim};
    envelope.meta = realistic_meta();
    views = {
        {kLatentsKey, 0, DType::kBF16, {kFrames * kTokensPerFrame, kDim}, {}, latents},
        {kContextOverrideKey, 0, DType::kBF16, {kContextFrames * kTokensPerFrame, kDim}, {}, context},
        {"text_embeds", 0, DType::kBF16, {512, 4096}, {}, text_embeds},
        {"noise_seed", 0, DType::kI64, {4}, {}, noise_seed},
    };
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

void BM_EnvelopePreflightEncodeDigest(benchmark::State& state) {
  const Fixture& f = fixture();
  for (auto _ : state) {
    PreparedEnvelope prepared = preflight_envelope(f.envelope, f.views, f.context_v2);
    std::uint64_t checksum = prepared.header().header_checksum;
    benchmark::DoNotOptimize(checksum);
  }
  state.counters["frame_bytes"] =
      static_cast<double>(preflight_envelope(f.envelope, f.views, f.context_v2).frame().size());
}
BENCHMARK(BM_EnvelopePreflightEncodeDigest);

// Baseline: what a Python-style control plane does with the same meta:
// json.dumps(meta, sort_keys=True) plus a digest of the text.
nlohmann::json meta_json(const Meta& meta) {
  nlohmann::json object = nlohmann::json::object();
  for (const auto& [key, value] : meta.entries()) {
    std::visit([&](const auto& v) { object[key] = v; }, value);
  }
  return object;
}

void BM_MetaStableJsonEncodeDigest(benchmark::State& state) {
  const Fixture& f = fixture();
  for (auto _ : state) {
    const std::string text = meta_json(f.envelope.meta).dump();
    std::uint64_t digest = digest_string(text);
    benchmark::DoNotOptimize(digest);
  }
  state.counters["json_bytes"] = static_cast<double>(meta_json(f.envelope.meta).dump().size());
}
BENCHMARK(BM_MetaStableJsonEncodeDigest);

void BM_EnvelopeDecodeValidate(benchmark::State& state) {
  const Fixture& f = fixture();
  const PreparedEnvelope prepared = preflight_envelope(f.envelope, f.views, f.context_v2);
  const FrameExpectations expect{f.context_v2.job_token_digest, kProtocolVersionMax};
  for (auto _ : state) {
    DecodedEnvelope decoded = decode_envelope(prepared.frame(), expect);
    std::uint64_t payload_bytes = decoded.header.payload_bytes;
    benchmark::DoNotOptimize(payload_bytes);
  }
}
BENCHMARK(BM_EnvelopeDecodeValidate);

void BM_ResultPreflightDecode(benchmark::State& state) {
  const Fixture& f = fixture();
  Result result;
  result.action = Action::kInfer;
  result.ids = f.envelope.ids;
  result.plan_id = 1000;
  result.observed_generator_calls = 5;
  result.geometry = f.envelope.geometry;
  result.kv_frames = 12;
  const std::vector<TensorView> output{{kOutputKey, 0, DType::kBF16, {kFrames * kTokensPerFrame, kDim}, {}, f.latents}};
  const FrameExpectations expect{f.context_v2.job_token_digest, kProtocolVersionMax};
  for (auto _ : state) {
    PreparedResult prepared = preflight_result(result, output, f.context_v2);
    DecodedResult decoded = decode_result(prepared.frame(), expect);
    std::uint32_t calls = decoded.result.observed_generator_calls;
    benchmark::DoNotOptimize(calls);
  }
}
BENCHMARK(BM_ResultPreflightDecode);

}  // namespace
}  // namespace lockstep

BENCHMARK_MAIN();
