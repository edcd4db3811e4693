// Realistic frames for the wire tests: the `tiny` reference model's chunk
// (docs/reference-model.md) with a recompute, meta and tensors whose bytes
// live in the fixture.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lockstep/control.h"
#include "lockstep/digest.h"
#include "lockstep/envelope.h"
#include "lockstep/result.h"

namespace lockstep::wire_test {

inline constexpr std::uint32_t kFrames = 2;
inline constexpr std::uint32_t kTokensPerFrame = 8;
inline constexpr std::uint32_t kDim = 64;
inline constexpr std::uint32_t kContextFrames = 3;

inline const std::string kJobToken = "job-7f3a";

inline FrameContext context(ProtocolVersion version = kProtocolVersionMax) {
  return FrameContext{version, 0, job_token_digest(kJobToken, 0)};
}

inline FrameExpectations expectations(ProtocolVersion version = kProtocolVersionMax) {
  return FrameExpectations{job_token_digest(kJobToken, 0), version};
}

// Tensor bytes, owned here so TensorViews can borrow them.
struct Tensors {
  std::vector<std::uint8_t> latents = std::vector<std::uint8_t>(kFrames * kTokensPerFrame * kDim * 4, 0x11);
  std::vector<std::uint8_t> context_override =
      std::vector<std::uint8_t>(kContextFrames * kTokensPerFrame * kDim * 4, 0x22);
  std::vector<std::uint8_t> output = std::vector<std::uint8_t>(kFrames * kTokensPerFrame * kDim * 4, 0x33);
  std::vector<std::uint8_t> noise_seed = std::vector<std::uint8_t>(4 * 8, 0x44);

  TensorView latents_view() const {
    return {kLatentsKey, 0, DType::kF32, {kFrames * kTokensPerFrame, kDim}, {}, latents};
  }
  TensorView context_view() const {
    return {kContextOverrideKey, 0, DType::kF32, {kContextFrames * kTokensPerFrame, kDim}, {}, context_override};
  }
  TensorView output_view() const { return {kOutputKey, 0, DType::kF32, {kFrames * kTokensPerFrame, kDim}, {}, output}; }
  TensorView noise_view() const { return {"noise_seed", 0, DType::kI64, {4}, {}, noise_seed}; }
};

inline Meta sample_meta() {
  Meta meta;
  meta.set("prompt", std::string("a red fox in snow, ünïcode ok"));
  meta.set("seed", std::int64_t{1234});
  meta.set("guidance", 5.5);
  meta.set("hard_cut", false);
  meta.set("scene_ids", std::vector<std::int64_t>{3, 1, 4});
  meta.set("weights", std::vector<double>{0.25, -0.5});
  meta.set("flags", std::vector<bool>{true, false, true});
  meta.set("tags", std::vector<std::string>{"fox", "snow"});
  return meta;
}

inline Plan sample_plan(bool recompute = true) {
  Plan plan;
  plan.plan_id = 41;
  plan.num_denoise_steps = 4;
  plan.timesteps = {1.0, 0.75, 0.5, 0.25};
  plan.do_kv_recompute = recompute;
  plan.init_cache = false;
  plan.attention_bias = -0.125;
  plan.expected_generator_calls = plan_generator_calls(plan.num_denoise_steps, recompute);
  return plan;
}

inline Envelope infer_envelope(bool recompute = true) {
  Envelope envelope;
  envelope.action = Action::kInfer;
  envelope.ids = CallIds{17, 9, 2};
  envelope.plan = sample_plan(recompute);
  envelope.geometry = Geometry{kFrames, kTokensPerFrame, kDim};
  envelope.meta = sample_meta();
  return envelope;
}

inline std::vector<TensorView> infer_views(const Tensors& t, bool recompute = true) {
  std::vector<TensorView> views{t.noise_view(), t.latents_view()};
  if (recompute) views.push_back(t.context_view());
  return views;
}

inline Result infer_result(ProtocolVersion version = kProtocolVersionMax) {
  Result result;
  result.action = Action::kInfer;
  result.ids = CallIds{17, 9, 2};
  result.plan_id = 41;
  result.observed_generator_calls = 5;
  result.geometry = Geometry{kFrames, kTokensPerFrame, kDim};
  result.durations = StageDurations{1500, 220};
  result.digests = ResultDigests{0x1111, 0x2222, 0x3333, 0x4444};
  if (version >= kProtocolVersionResultKvFrames) result.kv_frames = 5;
  return result;
}

inline std::vector<std::uint8_t> to_vector(std::span<const std::uint8_t> bytes) {
  return {bytes.begin(), bytes.end()};
}

// Rewrites the header checksum after a test edits header fields on purpose,
// so the edit (not the checksum) is what the decoder sees.
void reseal_header(std::vector<std::uint8_t>& frame);
// Rewrites both checksums after a test edits the body on purpose.
void reseal_frame(std::vector<std::uint8_t>& frame);

}  // namespace lockstep::wire_test
