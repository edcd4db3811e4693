// Result frames. Body layout (after the header; ids, action, plan_id in it):
//   u32 observed_generator_calls
//   geometry   u32 frames, u32 tokens_per_frame, u32 dim
//   u64 stage1_us, u64 idle_us
//   u64 kv_state, u64 output, u64 input, u64 ledger digests
//   v2+:       u32 kv_frames
//   ERROR:     u32 reason bytes, reason
//   manifest   header.manifest_count entries (tensor_manifest.h)
#include "lockstep/result.h"

#include <string>

#include "lockstep/error.h"
#include "wire/envelope_schema.h"
#include "wire/frame_codec.h"

namespace lockstep {

namespace {

using wire_detail::Reader;
using wire_detail::Writer;

constexpr std::size_t kResultFixedBytes = 4 + 12 + 2 * 8 + 4 * 8;
constexpr std::size_t kKvFramesBytes = 4;

std::size_t fixed_part_bytes(const Result& result) {
  std::size_t bytes = kResultFixedBytes;
  if (result.kv_frames) bytes += kKvFramesBytes;
  if (result.action == Action::kError) bytes += wire_detail::reason_bytes(result.error_reason);
  return bytes;
}

void write_fixed_part(Writer& out, const Result& result) {
  out.u32(result.observed_generator_calls);
  out.u32(result.geometry.frames);
  out.u32(result.geometry.tokens_per_frame);
  out.u32(result.geometry.dim);
  out.u64(result.durations.stage1_us);
  out.u64(result.durations.idle_us);
  out.u64(result.digests.kv_state);
  out.u64(result.digests.output);
  out.u64(result.digests.input);
  out.u64(result.digests.ledger);
  if (result.kv_frames) out.u32(*result.kv_frames);
  if (result.action == Action::kError) wire_detail::write_reason(out, result.error_reason);
}

void read_fixed_part(Reader& in, const FrameHeader& header, Result& result) {
  result.observed_generator_calls = in.u32("observed_generator_calls");
  result.geometry.frames = in.u32("geometry.frames");
  result.geometry.tokens_per_frame = in.u32("geometry.tokens_per_frame");
  result.geometry.dim = in.u32("geometry.dim");
  result.durations.stage1_us = in.u64("durations.stage1_us");
  result.durations.idle_us = in.u64("durations.idle_us");
  result.digests.kv_state = in.u64("digests.kv_state");
  result.digests.output = in.u64("digests.output");
  result.digests.input = in.u64("digests.input");
  result.digests.ledger = in.u64("digests.ledger");
  if (header.version >= kProtocolVersionResultKvFrames) result.kv_frames = in.u32("kv_frames");
  if (header.action == Action::kError) result.error_reason = wire_detail::read_reason(in);
}

[[noreturn]] void schema(const std::string& message) { throw Error(ErrorCode::kSchema, message); }

}  // namespace

namespace wire_detail {

void check_result_schema(const Result& result, std::span<const TensorSpec> manifest, ProtocolVersion version) {
  const Action action = result.action;
  const std::string what = std::string(action_name(action)) + " result";
  check_geometry(action, result.geometry, "result");
  check_error_reason(action, result.error_reason, "result");
  const bool wants_kv_frames = version >= kProtocolVersionResultKvFrames;
  if (wants_kv_frames && !result.kv_frames) {
    schema(what + " lacks kv_frames, required from protocol v" + std::to_string(kProtocolVersionResultKvFrames));
  }
  if (!wants_kv_frames && result.kv_frames) {
    schema(what + " carries kv_frames, which protocol v" + std::to_string(version) + " does not have");
  }
  if (action != Action::kInfer) {
    if (result.plan_id != 0) schema(what + " carries plan_id " + std::to_string(result.plan_id) + "; only INFER may");
    if (result.observed_generator_calls != 0) schema(what + " reports generator calls; only INFER runs the generator");
    if (!manifest.empty()) schema(what + " carries tensors; only INFER has a payload");
    return;
  }
  if (result.plan_id == 0) schema(what + " plan_id is 0");
  if (result.observed_generator_calls == 0) schema(what + " observed_generator_calls is 0");
  if (manifest.size() != 1) {
    schema(what + " carries " + std::to_string(manifest.size()) + " tensors; exactly '" + std::string(kOutputKey) +
           "'[0] is expected");
  }
  const Geometry& g = result.geometry;
  check_token_tensor(manifest, kOutputKey, g, std::uint64_t{g.frames} * g.tokens_per_frame);
}

}  // namespace wire_detail

PreparedResult preflight_result(const Result& result, std::span<const TensorView> tensors,
                                const FrameContext& context) {
  wire_detail::check_context(context.version, context.sender_rank);
  wire_detail::ManifestBuild built = wire_detail::build_manifest(tensors);
  wire_detail::check_result_schema(result, built.manifest, context.version);
  const std::size_t body_bytes = fixed_part_bytes(result) + built.encoded_bytes;

  FrameHeader header =
      wire_detail::header_for(result.action, context.version, context.sender_rank, context.job_token_digest);
  header.call_id = result.ids.call_id;
  header.chunk_index = result.ids.chunk_index;
  header.cache_epoch = result.ids.cache_epoch;
  header.plan_id = result.plan_id;
  const TensorManifest* manifest = &built.manifest;
  return wire_detail::PreparedFactory::make<MessageKind::kResult>(header, body_bytes, std::move(built),
                                                                  [&](Writer& out) {
                                                                    write_fixed_part(out, result);
                                                                    wire_detail::write_manifest(out, *manifest);
                                                                  });
}

DecodedResult decode_result(std::span<const std::uint8_t> frame, const FrameExpectations& expect) {
  DecodedResult decoded;
  decoded.header = wire_detail::open_frame(frame, expect, MessageKind::kResult);
  const FrameHeader& header = decoded.header;
  wire_detail::check_no_meta(header);
  Result& result = decoded.result;
  result.action = header.action;
  result.ids = CallIds{header.call_id, header.chunk_index, header.cache_epoch};
  result.plan_id = header.plan_id;

  Reader in(frame.subspan(kHeaderBytes));
  read_fixed_part(in, header, result);
  decoded.manifest = wire_detail::read_manifest(in, header);
  wire_detail::check_body_consumed(in, header);
  wire_detail::check_result_schema(result, decoded.manifest, header.version);
  return decoded;
}

}  // namespace lockstep
