// The envelope (Stage 0 → mesh, SPEC §2/§4A/§4F): what the mesh does next.
//
// Schema, checked by preflight_envelope() before a frame exists and again by
// decode_envelope() (each failure an Error{kSchema} naming the field unless
// noted):
//  - every action: meta passes the rules of meta.h;
//  - INFER: plan required with num_denoise_steps in [1, kDenoiseStepsMax],
//    timesteps.size() == num_denoise_steps, finite timesteps and
//    attention_bias (kEncode), plan_id != 0, and
//    expected_generator_calls == num_denoise_steps + (do_kv_recompute ? 1 : 0);
//    geometry all non-zero; tensor `latents`[0] present with shape
//    [frames × tokens_per_frame, dim]; do_kv_recompute ⇔ tensor
//    `context_override`[0] present, with shape [C × tokens_per_frame, dim],
//    C >= 1 (F1: there is no local fallback). Other tensors may follow.
//  - NOOP, SHUTDOWN, ERROR: no plan (plan_id 0), no tensors, zero geometry;
//    ERROR requires a non-empty UTF-8 reason of at most
//    kStringBytesMax bytes, the others forbid one.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lockstep/frame.h"
#include "lockstep/meta.h"
#include "lockstep/prepared.h"
#include "lockstep/tensor_manifest.h"

namespace lockstep {

// SPEC §2 ids: call_id +1 per action, chunk_index +1 per INFER, cache_epoch
// +1 per hard cut.
struct CallIds {
  std::uint64_t call_id = 0;
  std::uint64_t chunk_index = 0;
  std::uint64_t cache_epoch = 0;
  bool operator==(const CallIds&) const = default;
};

// Shape of one chunk (docs/reference-model.md): latents are
// [frames × tokens_per_frame, dim].
struct Geometry {
  std::uint32_t frames = 0;
  std::uint32_t tokens_per_frame = 0;
  std::uint32_t dim = 0;
  bool operator==(const Geometry&) const = default;
};

// Per-chunk plan (INFER only).
struct Plan {
  std::uint64_t plan_id = 0;  // non-zero; carried in the header
  std::uint32_t num_denoise_steps = 0;
  std::vector<double> timesteps;  // one per denoise step, in call order
  bool do_kv_recompute = false;   // one extra generator call over context_override first
  bool init_cache = false;        // reset the KV cache before this chunk (hard cut)
  double attention_bias = 0.0;    // added to attention logits of cached positions
  std::uint32_t expected_generator_calls = 0;
  bool operator==(const Plan&) const = default;
};

// expected_generator_calls a well-formed plan must carry.
std::uint32_t plan_generator_calls(std::uint32_t num_denoise_steps, bool do_kv_recompute) noexcept;

inline constexpr std::string_view kLatentsKey = "latents";
inline constexpr std::string_view kContextOverrideKey = "context_override";

struct Envelope {
  Action action = Action::kNoop;
  CallIds ids;
  std::optional<Plan> plan;  // INFER only
  Geometry geometry;         // INFER only
  Meta meta;
  std::string error_reason;  // ERROR only
  bool operator==(const Envelope&) const = default;
};

// Frame-level facts the sender supplies.
struct FrameContext {
  ProtocolVersion version = kProtocolVersionMax;  // the negotiated one
  std::int32_t sender_rank = 0;
  std::uint64_t job_token_digest = 0;
};

// Checks everything (schema above, meta and tensor rules, limits, version),
// then encodes the complete frame. Nothing is sent and nothing outside the
// returned value is touched, so a failure here strands nobody (A1, A2, A3,
// F1). Throws Error{kSchema|kEncode|kLimit|kVersion} naming the field.
// `tensors` may be in any order; the manifest is canonical. Their data must
// outlive the PreparedEnvelope's payload send. Pure; any thread.
PreparedEnvelope preflight_envelope(const Envelope& envelope, std::span<const TensorView> tensors,
                                    const FrameContext& context);

struct DecodedEnvelope {
  FrameHeader header;
  Envelope envelope;
  TensorManifest manifest;  // what allocate_payload() should be given
};

// Decodes a complete frame (header + body, exactly) and checks it: the header
// checks of decode_header(), kind == envelope, frame size == kHeaderBytes +
// body_bytes, body checksum (kChecksum), canonical body encoding (kDecode),
// then the schema above (kSchema/kEncode/kLimit) and manifest vs header
// payload_bytes. Never reads outside `frame`; allocates only after the header
// and checksums passed, and only within the limits. Pure; any thread.
DecodedEnvelope decode_envelope(std::span<const std::uint8_t> frame, const FrameExpectations& expect);

}  // namespace lockstep
