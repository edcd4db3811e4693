// The result (mesh → Stage 0, SPEC §2/§4A/§4E/§4H): what the mesh did for one
// envelope, with the digests Stage 0 cross-checks and the output tensor.
//
// Schema, checked by preflight_result() and again by decode_result() (each an
// Error{kSchema} naming the field unless noted):
//  - INFER: plan_id != 0, observed_generator_calls >= 1, geometry non-zero,
//    exactly one tensor, `output`[0], with shape [frames × tokens_per_frame, dim];
//  - NOOP, SHUTDOWN, ERROR: plan_id 0, no tensors, zero geometry,
//    observed_generator_calls 0; ERROR requires a reason (UTF-8, non-empty,
//    <= kStringBytesMax, kEncode otherwise), the others forbid one;
//  - version >= kProtocolVersionResultKvFrames: kv_frames required;
//    older versions: kv_frames must be absent.
// observed == expected generator calls is the runtime's check (B5), not the
// wire's: a mismatching result is still well-formed so Stage 0 can report it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "lockstep/envelope.h"
#include "lockstep/frame.h"
#include "lockstep/prepared.h"
#include "lockstep/tensor_manifest.h"

namespace lockstep {

inline constexpr std::string_view kOutputKey = "output";

// Stage-1 durations for Stage 0's overlap meter (SPEC §4E); no clock sync
// needed because each is a duration measured on the mesh.
struct StageDurations {
  std::uint64_t stage1_us = 0;  // envelope received → result ready
  std::uint64_t idle_us = 0;    // the mesh's time between its previous step and this one (not generating)
  bool operator==(const StageDurations&) const = default;
};

// Cross-rank digests (SPEC §4B/§4F/§4H), all XXH3-64 (digest.h).
struct ResultDigests {
  std::uint64_t kv_state = 0;  // KV-cache state digest after the chunk
  std::uint64_t output = 0;    // output tensor bytes
  std::uint64_t input = 0;     // latents (+ context override) as received
  std::uint64_t ledger = 0;    // mesh collective ledger digest at chunk end
  bool operator==(const ResultDigests&) const = default;
};

struct Result {
  Action action = Action::kInfer;  // the action of the envelope it answers
  CallIds ids;
  std::uint64_t plan_id = 0;
  std::uint32_t observed_generator_calls = 0;
  Geometry geometry;
  StageDurations durations;
  ResultDigests digests;
  std::optional<std::uint32_t> kv_frames;  // protocol v2+: KV frames held after the chunk
  std::string error_reason;                // ERROR only
  bool operator==(const Result&) const = default;
};

// Like preflight_envelope(): all checks, then the complete frame. Throws
// Error{kSchema|kEncode|kLimit|kVersion} naming the field. Pure; any thread.
PreparedResult preflight_result(const Result& result, std::span<const TensorView> tensors,
                                const FrameContext& context);

struct DecodedResult {
  FrameHeader header;
  Result result;
  TensorManifest manifest;
};

// Like decode_envelope(), for kind == result. Pure; any thread.
DecodedResult decode_result(std::span<const std::uint8_t> frame, const FrameExpectations& expect);

}  // namespace lockstep
