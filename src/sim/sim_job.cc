#include "sim/sim_job.h"

#include "lockstep/digest.h"

namespace lockstep::sim {

FrameContext sim_frame_context(int sender_rank) {
  return FrameContext{kProtocolVersionMax, sender_rank, job_token_digest(kSimJobToken)};
}

FrameExpectations sim_frame_expectations() {
  return FrameExpectations{job_token_digest(kSimJobToken), kProtocolVersionMax};
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
