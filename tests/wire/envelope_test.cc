#include "lockstep/envelope.h"

#include <gtest/gtest.h>

#include <limits>
#include <type_traits>

#include "wire/expect_error.h"
#include "wire/wire_fixtures.h"

namespace lockstep {
namespace {

using wire_test::context;
using wire_test::expectations;

static_assert(!std::is_default_constructible_v<PreparedEnvelope>, "only preflight makes a PreparedEnvelope");
static_assert(!std::is_copy_constructible_v<PreparedEnvelope>, "a prepared frame is sent once");
static_assert(!std::is_constructible_v<PreparedEnvelope, PreparedResult&&>, "kinds do not convert");

TEST(Envelope, InferRoundTripsWithCanonicalManifestAndPayloadOrder) {
  const wire_test::Tensors t;
  const Envelope envelope = wire_test::infer_envelope();
  const auto views = wire_test::infer_views(t);
  const PreparedEnvelope prepared = preflight_envelope(envelope, views, context());

  ASSERT_EQ(prepared.manifest().size(), 3u);
  EXPECT_EQ(prepared.manifest()[0].key, kContextOverrideKey);
  EXPECT_EQ(prepared.manifest()[1].key, kLatentsKey);
  EXPECT_EQ(prepared.manifest()[2].key, "noise_seed");
  ASSERT_EQ(prepared.payload().size(), 3u);
  EXPECT_EQ(prepared.payload()[0].data(), t.context_override.data());
  EXPECT_EQ(prepared.payload()[1].data(), t.latents.data());
  EXPECT_EQ(prepared.payload()[2].data(), t.noise_seed.data());
  EXPECT_EQ(prepared.frame().size(), kHeaderBytes + prepared.header().body_bytes);

  const DecodedEnvelope decoded = decode_envelope(prepared.frame(), expectations());
  EXPECT_EQ(decoded.envelope, envelope);
  EXPECT_EQ(decoded.manifest, prepared.manifest());
  EXPECT_EQ(decoded.header, prepared.header());
  EXPECT_EQ(decoded.header.payload_bytes, t.latents.size() + t.context_override.size() + t.noise_seed.size());
  EXPECT_EQ(decoded.header.plan_id, 41u);
  EXPECT_EQ(decoded.header.manifest_count, 3u);
  EXPECT_EQ(decoded.header.meta_count, envelope.meta.size());
}

TEST(Envelope, FramesAreDeterministicWhateverTheTensorOrder) {
  const wire_test::Tensors t;
  const Envelope envelope = wire_test::infer_envelope();
  auto views = wire_test::infer_views(t);
  const auto first = wire_test::to_vector(preflight_envelope(envelope, views, context()).frame());
  std::swap(views[0], views[2]);
  const auto second = wire_test::to_vector(preflight_envelope(envelope, views, context()).frame());
  EXPECT_EQ(first, second);
}

TEST(Envelope, ControlActionsRoundTrip) {
  for (const Action action : {Action::kNoop, Action::kShutdown, Action::kError}) {
    Envelope envelope;
    envelope.action = action;
    envelope.ids = CallIds{5, 3, 1};
    envelope.meta.set("reason_code", std::int64_t{7});
    if (action == Action::kError) envelope.error_reason = "leader rejected envelope 4: plan mismatch";
    for (const ProtocolVersion version : {ProtocolVersion{1}, ProtocolVersion{2}}) {
      const PreparedEnvelope prepared = preflight_envelope(envelope, {}, context(version));
      EXPECT_TRUE(prepared.payload().empty());
      const DecodedEnvelope decoded = decode_envelope(prepared.frame(), expectations(version));
      EXPECT_EQ(decoded.envelope, envelope) << action_name(action);
      EXPECT_EQ(decoded.header.version, version);
    }
  }
}

TEST(Envelope, InferWithoutRecomputeRoundTrips) {
  const wire_test::Tensors t;
  const Envelope envelope = wire_test::infer_envelope(false);
  const PreparedEnvelope prepared = preflight_envelope(envelope, wire_test::infer_views(t, false), context(1));
  EXPECT_EQ(decode_envelope(prepared.frame(), expectations(1)).envelope, envelope);
}

// --- preflight: schema per action (nothing may leave before these pass) ---

class EnvelopeSchema : public ::testing::Test {
 protected:
  void expect_rejected(const Envelope& envelope, ErrorCode code, const std::string& text, bool recompute_views = true) {
    const auto views = wire_test::infer_views(tensors_, recompute_views);
    EXPECT_LOCKSTEP_ERROR(preflight_envelope(envelope, views, context()), code, text);
  }
  wire_test::Tensors tensors_;
};

TEST_F(EnvelopeSchema, InferRequiresAPlan) {
  Envelope e = wire_test::infer_envelope();
  e.plan.reset();
  expect_rejected(e, ErrorCode::kSchema, "INFER envelope has no plan");
}

TEST_F(EnvelopeSchema, PlanArithmeticIsChecked) {
  Envelope e = wire_test::infer_envelope();
  e.plan->expected_generator_calls = 4;  // forgot the recompute call
  expect_rejected(e, ErrorCode::kSchema, "expected_generator_calls is 4 but num_denoise_steps 4 + do_kv_recompute 1 = 5");
}

TEST_F(EnvelopeSchema, TimestepsMustMatchStepCount) {
  Envelope e = wire_test::infer_envelope();
  e.plan->timesteps.pop_back();
  expect_rejected(e, ErrorCode::kSchema, "plan.timesteps has 3 entries but plan.num_denoise_steps is 4");
}

TEST_F(EnvelopeSchema, StepCountBounds) {
  Envelope zero = wire_test::infer_envelope();
  zero.plan->num_denoise_steps = 0;
  zero.plan->timesteps.clear();
  zero.plan->expected_generator_calls = 1;
  expect_rejected(zero, ErrorCode::kSchema, "num_denoise_steps is 0");
  Envelope many = wire_test::infer_envelope();
  many.plan->num_denoise_steps = kDenoiseStepsMax + 1;
  many.plan->timesteps.assign(kDenoiseStepsMax + 1, 0.5);
  many.plan->expected_generator_calls = kDenoiseStepsMax + 2;
  expect_rejected(many, ErrorCode::kLimit, "kDenoiseStepsMax");
}

TEST_F(EnvelopeSchema, PlanIdAndFiniteFloats) {
  Envelope id = wire_test::infer_envelope();
  id.plan->plan_id = 0;
  expect_rejected(id, ErrorCode::kSchema, "plan.plan_id is 0");
  Envelope nan = wire_test::infer_envelope();
  nan.plan->timesteps[2] = std::numeric_limits<double>::quiet_NaN();
  expect_rejected(nan, ErrorCode::kEncode, "plan.timesteps");
  Envelope inf = wire_test::infer_envelope();
  inf.plan->attention_bias = -std::numeric_limits<double>::infinity();
  expect_rejected(inf, ErrorCode::kEncode, "plan.attention_bias");
}

TEST_F(EnvelopeSchema, RecomputeWithoutContextOverrideFails) {  // F1
  const Envelope e = wire_test::infer_envelope(true);
  expect_rejected(e, ErrorCode::kSchema, "tensor 'context_override[0]' is required and missing", false);
}

TEST_F(EnvelopeSchema, ContextOverrideWithoutRecomputeFails) {
  const Envelope e = wire_test::infer_envelope(false);
  expect_rejected(e, ErrorCode::kSchema, "plan.do_kv_recompute is false", true);
}

TEST_F(EnvelopeSchema, GeometryMustMatchTensorShapes) {
  Envelope frames = wire_test::infer_envelope();
  frames.geometry.frames = 3;
  expect_rejected(frames, ErrorCode::kSchema, "tensor 'latents[0]' has shape [16, 64], geometry requires [24, 64]");
  Envelope dim = wire_test::infer_envelope();
  dim.geometry.dim = 32;
  expect_rejected(dim, ErrorCode::kSchema, "geometry requires [16, 32]");
  Envelope tpf = wire_test::infer_envelope();
  tpf.geometry = Geometry{1, 16, wire_test::kDim};  // latents still fit, override (24 rows) does not
  expect_rejected(tpf, ErrorCode::kSchema, "tensor 'context_override[0]' has shape [24, 64], geometry requires [C*16, 64]");
  Envelope zero = wire_test::infer_envelope();
  zero.geometry.tokens_per_frame = 0;
  expect_rejected(zero, ErrorCode::kSchema, "must be all non-zero");
}

TEST_F(EnvelopeSchema, LatentsAreRequired) {
  const Envelope e = wire_test::infer_envelope(false);
  const std::vector<TensorView> views{tensors_.noise_view()};
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, views, context()), ErrorCode::kSchema,
                        "tensor 'latents[0]' is required and missing");
}

TEST_F(EnvelopeSchema, NonInferActionsForbidPlanTensorsAndGeometry) {
  Envelope plan;
  plan.action = Action::kNoop;
  plan.plan = wire_test::sample_plan();
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(plan, {}, context()), ErrorCode::kSchema, "NOOP envelope carries a plan");
  Envelope tensors;
  tensors.action = Action::kShutdown;
  const std::vector<TensorView> views{tensors_.latents_view()};
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(tensors, views, context()), ErrorCode::kSchema,
                        "SHUTDOWN envelope carries 1 tensors");
  Envelope geometry;
  geometry.action = Action::kNoop;
  geometry.geometry.frames = 1;
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(geometry, {}, context()), ErrorCode::kSchema, "NOOP envelope carries geometry");
}

TEST_F(EnvelopeSchema, ErrorReasonRules) {
  Envelope missing;
  missing.action = Action::kError;
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(missing, {}, context()), ErrorCode::kSchema, "error_reason is required");
  Envelope bad;
  bad.action = Action::kError;
  bad.error_reason = "bad \xFF byte";
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(bad, {}, context()), ErrorCode::kEncode, "not valid UTF-8");
  Envelope stray;
  stray.action = Action::kNoop;
  stray.error_reason = "why";
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(stray, {}, context()), ErrorCode::kSchema, "NOOP envelope carries an error_reason");
}

TEST_F(EnvelopeSchema, UnencodableMetaFailsBeforeAnyFrameExists) {  // A1
  Envelope e = wire_test::infer_envelope();
  e.meta.set("guidance", std::numeric_limits<double>::infinity());
  expect_rejected(e, ErrorCode::kEncode, "meta 'guidance'");
}

TEST_F(EnvelopeSchema, UnsupportedVersionCannotBeEncoded) {
  const Envelope e = wire_test::infer_envelope();
  const auto views = wire_test::infer_views(tensors_);
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, views, context(kProtocolVersionMax + 1)), ErrorCode::kVersion,
                        "cannot encode protocol version 3");
  FrameContext negative = context();
  negative.sender_rank = -1;
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, views, negative), ErrorCode::kInvalidArgument, "sender_rank");
}

// --- preflight: tensor rules ---

TEST_F(EnvelopeSchema, UnsupportedDtypeFailsNamingTheTensor) {  // A2
  const Envelope e = wire_test::infer_envelope();
  auto views = wire_test::infer_views(tensors_);
  views[0].dtype = static_cast<DType>(42);
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, views, context()), ErrorCode::kEncode,
                        "tensor 'noise_seed[0]' has unsupported dtype 42");
}

TEST_F(EnvelopeSchema, TensorShapeDataAndLayoutRules) {
  const Envelope e = wire_test::infer_envelope();
  auto size = wire_test::infer_views(tensors_);
  size[0].shape = TensorShape{5};
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, size, context()), ErrorCode::kSchema,
                        "tensor 'noise_seed[0]' data is 32 bytes but [5] x i64 is 40");
  auto negative = wire_test::infer_views(tensors_);
  negative[0].shape = TensorShape{-4};
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, negative, context()), ErrorCode::kEncode, "negative dimension");
  auto strided = wire_test::infer_views(tensors_);
  strided[1].strides_elements = TensorShape{1, 16};  // transposed view of latents
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, strided, context()), ErrorCode::kSchema,
                        "tensor 'latents[0]' with shape [16, 64] has strides [1, 16]: not contiguous");
  auto explicit_contiguous = wire_test::infer_views(tensors_);
  explicit_contiguous[1].strides_elements = TensorShape{64, 1};
  EXPECT_NO_THROW(preflight_envelope(e, explicit_contiguous, context()));
  auto duplicate = wire_test::infer_views(tensors_);
  duplicate.push_back(tensors_.noise_view());
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, duplicate, context()), ErrorCode::kSchema,
                        "tensor 'noise_seed[0]' appears twice");
  auto bad_key = wire_test::infer_views(tensors_);
  bad_key[0].key = "noise seed";
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, bad_key, context()), ErrorCode::kEncode, "tensor key 'noise seed'");
  EXPECT_LOCKSTEP_ERROR(TensorShape({1, 1, 1, 1, 1, 1, 1, 1, 1}), ErrorCode::kLimit, "kShapeRankMax");
}

TEST_F(EnvelopeSchema, TensorCountAndPayloadLimits) {
  const Envelope e = wire_test::infer_envelope();
  auto many = wire_test::infer_views(tensors_);
  for (std::uint32_t i = 1; many.size() <= kTensorCountMax; ++i) {
    TensorView extra = tensors_.noise_view();
    extra.index = i;
    many.push_back(extra);
  }
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, many, context()), ErrorCode::kLimit, "kTensorCountMax");
  auto huge = wire_test::infer_views(tensors_);
  huge[0].shape = TensorShape{std::int64_t{1} << 40};
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, huge, context()), ErrorCode::kLimit, "kPayloadBytesMax");
  auto overflow = wire_test::infer_views(tensors_);
  overflow[0].shape = TensorShape{std::numeric_limits<std::int64_t>::max(), 4};
  EXPECT_LOCKSTEP_ERROR(preflight_envelope(e, overflow, context()), ErrorCode::kLimit, "kPayloadBytesMax");
}

}  // namespace
}  // namespace lockstep
