// Envelope frames. Body layout (after the header):
//   geometry   u32 frames, u32 tokens_per_frame, u32 dim
//   INFER:     u32 num_denoise_steps, u32 expected_generator_calls,
//              u8 do_kv_recompute, u8 init_cache, f64 attention_bias,
//              num_denoise_steps × f64 timesteps          (plan_id: header)
//   ERROR:     u32 reason bytes, reason
//   meta       header.meta_bytes bytes, header.meta_count entries (meta.h)
//   manifest   header.manifest_count entries (tensor_manifest.h)
#include "lockstep/envelope.h"

#include <string>

#include "lockstep/error.h"
#include "wire/envelope_schema.h"
#include "wire/frame_codec.h"
#include "wire/meta_codec.h"

namespace lockstep {

std::uint32_t plan_generator_calls(std::uint32_t num_denoise_steps, bool do_kv_recompute) noexcept {
  return num_denoise_steps + (do_kv_recompute ? 1u : 0u);
}

namespace {

using wire_detail::Reader;
using wire_detail::Writer;

constexpr std::size_t kGeometryBytes = 12;
constexpr std::size_t kPlanFixedBytes = 4 + 4 + 1 + 1 + 8;

std::size_t fixed_part_bytes(const Envelope& envelope) {
  std::size_t bytes = kGeometryBytes;
  if (envelope.plan) bytes += kPlanFixedBytes + 8 * envelope.plan->timesteps.size();
  if (envelope.action == Action::kError) bytes += wire_detail::reason_bytes(envelope.error_reason);
  return bytes;
}

void write_fixed_part(Writer& out, const Envelope& envelope) {
  out.u32(envelope.geometry.frames);
  out.u32(envelope.geometry.tokens_per_frame);
  out.u32(envelope.geometry.dim);
  if (envelope.plan) {
    const Plan& plan = *envelope.plan;
    out.u32(plan.num_denoise_steps);
    out.u32(plan.expected_generator_calls);
    out.u8(plan.do_kv_recompute ? 1 : 0);
    out.u8(plan.init_cache ? 1 : 0);
    out.f64(plan.attention_bias);
    for (const double t : plan.timesteps) out.f64(t);
  }
  if (envelope.action == Action::kError) {
    wire_detail::write_reason(out, envelope.error_reason);
  }
}

Plan read_plan(Reader& in, std::uint64_t plan_id) {
  Plan plan;
  plan.plan_id = plan_id;
  plan.num_denoise_steps = in.u32("plan.num_denoise_steps");
  plan.expected_generator_calls = in.u32("plan.expected_generator_calls");
  plan.do_kv_recompute = wire_detail::read_flag(in, "plan.do_kv_recompute");
  plan.init_cache = wire_detail::read_flag(in, "plan.init_cache");
  plan.attention_bias = in.f64("plan.attention_bias");
  // Bounded before reserving: the count comes from the wire.
  if (plan.num_denoise_steps > kDenoiseStepsMax) {
    throw Error(ErrorCode::kLimit, "envelope plan.num_denoise_steps " + std::to_string(plan.num_denoise_steps) +
                                       " exceeds kDenoiseStepsMax " + std::to_string(kDenoiseStepsMax));
  }
  plan.timesteps.reserve(plan.num_denoise_steps);
  for (std::uint32_t s = 0; s < plan.num_denoise_steps; ++s) plan.timesteps.push_back(in.f64("plan.timesteps"));
  return plan;
}

void read_fixed_part(Reader& in, const FrameHeader& header, Envelope& envelope) {
  envelope.geometry.frames = in.u32("geometry.frames");
  envelope.geometry.tokens_per_frame = in.u32("geometry.tokens_per_frame");
  envelope.geometry.dim = in.u32("geometry.dim");
  if (header.action == Action::kInfer) {
    envelope.plan = read_plan(in, header.plan_id);
  } else if (header.plan_id != 0) {
    throw Error(ErrorCode::kSchema, std::string(action_name(header.action)) + " envelope header carries plan_id " +
                                        std::to_string(header.plan_id) + "; only INFER has a plan");
  }
  if (header.action == Action::kError) envelope.error_reason = wire_detail::read_reason(in);
}

}  // namespace

PreparedEnvelope preflight_envelope(const Envelope& envelope, std::span<const TensorView> tensors,
                                    const FrameContext& context) {
  wire_detail::check_context(context.version, context.sender_rank);
  wire_detail::ManifestBuild built = wire_detail::build_manifest(tensors);
  wire_detail::check_envelope_schema(envelope, built.manifest);
  const std::size_t meta_bytes = wire_detail::meta_section_bytes(envelope.meta);
  const std::size_t body_bytes = fixed_part_bytes(envelope) + meta_bytes + built.encoded_bytes;

  FrameHeader header =
      wire_detail::header_for(envelope.action, context.version, context.sender_rank, context.job_token_digest);
  header.call_id = envelope.ids.call_id;
  header.chunk_index = envelope.ids.chunk_index;
  header.cache_epoch = envelope.ids.cache_epoch;
  header.plan_id = envelope.plan ? envelope.plan->plan_id : 0;
  header.meta_bytes = static_cast<std::uint32_t>(meta_bytes);
  header.meta_count = static_cast<std::uint16_t>(envelope.meta.size());
  const TensorManifest* manifest = &built.manifest;
  return wire_detail::PreparedFactory::make<MessageKind::kEnvelope>(header, body_bytes, std::move(built),
                                                                    [&](Writer& out) {
                                                                      write_fixed_part(out, envelope);
                                                                      wire_detail::write_meta(out, envelope.meta);
                                                                      wire_detail::write_manifest(out, *manifest);
                                                                    });
}

DecodedEnvelope decode_envelope(std::span<const std::uint8_t> frame, const FrameExpectations& expect) {
  DecodedEnvelope decoded;
  decoded.header = wire_detail::open_frame(frame, expect, MessageKind::kEnvelope);
  const FrameHeader& header = decoded.header;
  Envelope& envelope = decoded.envelope;
  envelope.action = header.action;
  envelope.ids = CallIds{header.call_id, header.chunk_index, header.cache_epoch};

  Reader in(frame.subspan(kHeaderBytes));
  read_fixed_part(in, header, envelope);
  if (in.remaining() < header.meta_bytes) {
    throw Error(ErrorCode::kDecode, "envelope meta section (" + std::to_string(header.meta_bytes) +
                                        " bytes) runs past the body");
  }
  const std::string_view meta_section = in.bytes("meta section", header.meta_bytes);
  envelope.meta = wire_detail::read_meta(
      {reinterpret_cast<const std::uint8_t*>(meta_section.data()), meta_section.size()}, header.meta_count);
  decoded.manifest = wire_detail::read_manifest(in, header);
  wire_detail::check_body_consumed(in, header);
  wire_detail::check_envelope_schema(envelope, decoded.manifest);
  return decoded;
}

}  // namespace lockstep
