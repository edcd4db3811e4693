#include "wire/envelope_schema.h"

#include <cmath>
#include <string>

#include "lockstep/error.h"
#include "wire/manifest_codec.h"
#include "wire/text.h"

namespace lockstep::wire_detail {

namespace {

[[noreturn]] void schema(const std::string& message) { throw Error(ErrorCode::kSchema, message); }

void check_finite(double value, std::string_view field) {
  if (!std::isfinite(value)) {
    throw Error(ErrorCode::kEncode, "envelope " + std::string(field) + " is non-finite (" + std::to_string(value) + ")");
  }
}

void check_plan(const Plan& plan) {
  if (plan.plan_id == 0) schema("INFER envelope plan.plan_id is 0 (plan ids start at 1)");
  if (plan.num_denoise_steps == 0) schema("INFER envelope plan.num_denoise_steps is 0");
  if (plan.num_denoise_steps > kDenoiseStepsMax) {
    throw Error(ErrorCode::kLimit, "INFER envelope plan.num_denoise_steps " + std::to_string(plan.num_denoise_steps) +
                                       " exceeds kDenoiseStepsMax " + std::to_string(kDenoiseStepsMax));
  }
  if (plan.timesteps.size() != plan.num_denoise_steps) {
    schema("INFER envelope plan.timesteps has " + std::to_string(plan.timesteps.size()) +
           " entries but plan.num_denoise_steps is " + std::to_string(plan.num_denoise_steps));
  }
  for (const double t : plan.timesteps) check_finite(t, "plan.timesteps");
  check_finite(plan.attention_bias, "plan.attention_bias");
  const std::uint32_t expected = plan_generator_calls(plan.num_denoise_steps, plan.do_kv_recompute);
  if (plan.expected_generator_calls != expected) {
    schema("INFER envelope plan.expected_generator_calls is " + std::to_string(plan.expected_generator_calls) +
           " but num_denoise_steps " + std::to_string(plan.num_denoise_steps) + " + do_kv_recompute " +
           std::to_string(plan.do_kv_recompute ? 1 : 0) + " = " + std::to_string(expected));
  }
}

bool has_key(std::span<const TensorSpec> manifest, std::string_view key) {
  for (const TensorSpec& spec : manifest) {
    if (spec.key == key) return true;
  }
  return false;
}

void check_infer_tensors(const Envelope& envelope, std::span<const TensorSpec> manifest) {
  const Geometry& g = envelope.geometry;
  check_token_tensor(manifest, kLatentsKey, g, std::uint64_t{g.frames} * g.tokens_per_frame);
  if (envelope.plan->do_kv_recompute) {
    // F1: a recompute has no local fallback; without the override it cannot run.
    check_token_tensor(manifest, kContextOverrideKey, g, 0);
  } else if (has_key(manifest, kContextOverrideKey)) {
    schema("INFER envelope carries tensor '" + std::string(kContextOverrideKey) +
           "' but plan.do_kv_recompute is false");
  }
}

}  // namespace

void check_geometry(Action action, const Geometry& geometry, std::string_view message) {
  const bool all_set = geometry.frames != 0 && geometry.tokens_per_frame != 0 && geometry.dim != 0;
  const bool all_zero = geometry.frames == 0 && geometry.tokens_per_frame == 0 && geometry.dim == 0;
  if (action == Action::kInfer && !all_set) {
    schema("INFER " + std::string(message) + " geometry (frames " + std::to_string(geometry.frames) +
           ", tokens_per_frame " + std::to_string(geometry.tokens_per_frame) + ", dim " +
           std::to_string(geometry.dim) + ") must be all non-zero");
  }
  if (action != Action::kInfer && !all_zero) {
    schema(std::string(action_name(action)) + " " + std::string(message) + " carries geometry; only INFER may");
  }
}

void check_error_reason(Action action, std::string_view reason, std::string_view message) {
  if (action == Action::kError) {
    check_reason(reason, std::string(message) + " error_reason");
  } else if (!reason.empty()) {
    schema(std::string(action_name(action)) + " " + std::string(message) + " carries an error_reason; only ERROR may");
  }
}

void check_token_tensor(std::span<const TensorSpec> manifest, std::string_view tensor_key, const Geometry& geometry,
                        std::uint64_t rows_exact) {
  const TensorSpec* spec = find_tensor(manifest, tensor_key, 0);
  if (spec == nullptr) schema(tensor_label(tensor_key, 0) + " is required and missing");
  const TensorShape& shape = spec->shape;
  const bool rank_ok = shape.rank() == 2 && shape[1] == static_cast<std::int64_t>(geometry.dim);
  const auto rows = rank_ok ? static_cast<std::uint64_t>(shape[0]) : 0;
  const bool rows_ok = rows_exact != 0 ? rows == rows_exact : rows > 0 && rows % geometry.tokens_per_frame == 0;
  if (!rank_ok || !rows_ok) {
    const std::string want = rows_exact != 0 ? std::to_string(rows_exact) : "C*" + std::to_string(geometry.tokens_per_frame);
    schema(tensor_label(tensor_key, 0) + " has shape " + shape_string(shape) + ", geometry requires [" + want + ", " +
           std::to_string(geometry.dim) + "]");
  }
}

void check_envelope_schema(const Envelope& envelope, std::span<const TensorSpec> manifest) {
  const Action action = envelope.action;
  check_geometry(action, envelope.geometry, "envelope");
  check_error_reason(action, envelope.error_reason, "envelope");
  if (action != Action::kInfer) {
    if (envelope.plan) schema(std::string(action_name(action)) + " envelope carries a plan; only INFER may");
    if (!manifest.empty()) {
      schema(std::string(action_name(action)) + " envelope carries " + std::to_string(manifest.size()) +
             " tensors; only INFER has a payload");
    }
    return;
  }
  if (!envelope.plan) schema("INFER envelope has no plan");
  check_plan(*envelope.plan);
  check_infer_tensors(envelope, manifest);
}

}  // namespace lockstep::wire_detail
