#include "lockstep/chunk_protocol.h"

#include <string>

#include "lockstep/control.h"
#include "lockstep/error.h"
#include "lockstep/wire_limits.h"

namespace lockstep {

Plan plan_for_chunk(const ChunkSchedule& schedule, std::int64_t chunk_in_epoch, std::uint64_t cache_epoch) {
  if (schedule.denoise_steps < 1 || schedule.denoise_steps > static_cast<int>(kDenoiseStepsMax) ||
      schedule.recompute_every < 0 || chunk_in_epoch < 0) {
    throw Error(ErrorCode::kInvalidArgument, "chunk schedule: denoise_steps " +
                                                 std::to_string(schedule.denoise_steps) + ", recompute_every " +
                                                 std::to_string(schedule.recompute_every) + ", chunk_in_epoch " +
                                                 std::to_string(chunk_in_epoch));
  }
  Plan plan;
  plan.num_denoise_steps = static_cast<std::uint32_t>(schedule.denoise_steps);
  for (int step = 0; step < schedule.denoise_steps; ++step) {
    plan.timesteps.push_back(1.0 - static_cast<double>(step) / schedule.denoise_steps);
  }
  plan.init_cache = chunk_in_epoch == 0;
  plan.do_kv_recompute = schedule.recompute_every > 0 && chunk_in_epoch > 0 &&
                         chunk_in_epoch % schedule.recompute_every == 0;
  plan.attention_bias = -0.25 * static_cast<double>(cache_epoch % 3);
  plan.expected_generator_calls = plan_generator_calls(plan.num_denoise_steps, plan.do_kv_recompute);
  // Non-zero and distinct for every (steps, recompute) shape of plan.
  plan.plan_id = 1 + (static_cast<std::uint64_t>(schedule.denoise_steps) << 1 | (plan.do_kv_recompute ? 1 : 0));
  return plan;
}

EnvelopeIds sequencer_ids(const DecodedEnvelope& decoded) {
  EnvelopeIds ids;
  ids.call_id = decoded.envelope.ids.call_id;
  ids.cache_epoch = decoded.envelope.ids.cache_epoch;
  if (decoded.envelope.action == Action::kInfer) ids.chunk_index = decoded.envelope.ids.chunk_index;
  ids.content_digest = decoded.header.body_checksum;
  return ids;
}

DecodedEnvelope decode_mesh_frame(std::span<const std::uint8_t> frame, const FrameExpectations& expect) {
  if (frame.size() < kHeaderBytes) {
    throw Error(ErrorCode::kDecode, "frame of " + std::to_string(frame.size()) +
                                        " bytes is shorter than the header (" + std::to_string(kHeaderBytes) + ")");
  }
  const FrameHeader header = decode_header(frame.first<kHeaderBytes>(), expect);
  if (header.kind == MessageKind::kControl) {
    const DecodedControl control = decode_control(frame, expect);
    throw Error(ErrorCode::kPeerFailure, "the leader broadcast ERROR for call_id " +
                                             std::to_string(control.control.ids.call_id) + ": " +
                                             control.control.reason);
  }
  return decode_envelope(frame, expect);
}

}  // namespace lockstep
