#include "sim/sim_job.h"

#include "lockstep/digest.h"
#include "lockstep/recovery.h"

namespace lockstep::sim {

namespace {

std::uint64_t frame_token(const Scenario& scenario, std::uint32_t generation) {
  return job_token_digest(kSimJobToken, scenario.bug == PlantedBug::kNoGenerationFence ? 0 : generation);
}

}  // namespace

FrameContext sim_frame_context(const Scenario& scenario, int sender_rank, std::uint32_t generation) {
  return FrameContext{kProtocolVersionMax, sender_rank, frame_token(scenario, generation)};
}

FrameExpectations sim_frame_expectations(const Scenario& scenario, std::uint32_t generation) {
  return FrameExpectations{frame_token(scenario, generation), kProtocolVersionMax};
}

bool generation_is_current(const Scenario& scenario, Store& job_store, std::uint32_t generation) {
  return scenario.bug == PlantedBug::kNoGenerationFence || lockstep::generation_is_current(job_store, generation);
}

Geometry sim_geometry(const Scenario& scenario) {
  return Geometry{kFramesPerChunk, kTokensPerFrame, static_cast<std::uint32_t>(scenario.dim())};
}

std::vector<float> sim_model_output(std::span<const float> latents, std::uint32_t generator_calls) {
  std::vector<float> output(latents.begin(), latents.end());
  for (float& value : output) value += static_cast<float>(generator_calls);
  return output;
}

std::uint64_t digest_floats(std::span<const float> values) { return digest_tensor(values.data(), values.size_bytes()); }

}  // namespace lockstep::sim
