#include "lockstep/result.h"

#include <gtest/gtest.h>

#include "lockstep/control.h"
#include "wire/bytes.h"
#include "wire/expect_error.h"
#include "wire/wire_fixtures.h"

namespace lockstep {
namespace {

using wire_test::context;
using wire_test::expectations;

TEST(Result, InferRoundTripsInEveryVersion) {
  const wire_test::Tensors t;
  for (const ProtocolVersion version : {ProtocolVersion{1}, ProtocolVersion{2}}) {
    const Result result = wire_test::infer_result(version);
    const std::vector<TensorView> views{t.output_view()};
    const PreparedResult prepared = preflight_result(result, views, context(version));
    ASSERT_EQ(prepared.payload().size(), 1u);
    EXPECT_EQ(prepared.payload()[0].data(), t.output.data());
    const DecodedResult decoded = decode_result(prepared.frame(), expectations(version));
    EXPECT_EQ(decoded.result, result) << "v" << version;
    EXPECT_EQ(decoded.manifest, prepared.manifest());
    EXPECT_EQ(decoded.header.meta_count, 0u);
    EXPECT_EQ(decoded.result.kv_frames.has_value(), version >= kProtocolVersionResultKvFrames);
  }
}

TEST(Result, VersionTwoIsFourBytesLongerThanVersionOne) {
  const wire_test::Tensors t;
  const std::vector<TensorView> views{t.output_view()};
  const auto v1 = preflight_result(wire_test::infer_result(1), views, context(1));
  const auto v2 = preflight_result(wire_test::infer_result(2), views, context(2));
  EXPECT_EQ(v2.frame().size(), v1.frame().size() + 4);
  EXPECT_LOCKSTEP_ERROR(decode_result(v1.frame(), expectations(2)), ErrorCode::kVersion, "negotiated version 2");
}

TEST(Result, KvFramesFollowsTheVersionSchema) {
  const wire_test::Tensors t;
  const std::vector<TensorView> views{t.output_view()};
  EXPECT_LOCKSTEP_ERROR(preflight_result(wire_test::infer_result(2), views, context(1)), ErrorCode::kSchema,
                        "carries kv_frames, which protocol v1 does not have");
  EXPECT_LOCKSTEP_ERROR(preflight_result(wire_test::infer_result(1), views, context(2)), ErrorCode::kSchema,
                        "lacks kv_frames, required from protocol v2");
}

TEST(Result, ErrorAndShutdownRoundTrip) {
  Result error;
  error.action = Action::kError;
  error.ids = CallIds{8, 0, 1};
  error.kv_frames = 0;
  error.error_reason = "mesh rank 3: plan check failed (observed 6, expected 5)";
  const auto prepared = preflight_result(error, {}, context());
  EXPECT_EQ(decode_result(prepared.frame(), expectations()).result, error);

  Result shutdown;
  shutdown.action = Action::kShutdown;
  shutdown.kv_frames = 0;
  EXPECT_EQ(decode_result(preflight_result(shutdown, {}, context()).frame(), expectations()).result, shutdown);
}

TEST(Result, SchemaViolations) {
  const wire_test::Tensors t;
  const std::vector<TensorView> output{t.output_view()};
  EXPECT_LOCKSTEP_ERROR(preflight_result(wire_test::infer_result(), {}, context()), ErrorCode::kSchema,
                        "carries 0 tensors; exactly 'output'[0] is expected");
  Result wrong_geometry = wire_test::infer_result();
  wrong_geometry.geometry.frames = 1;
  EXPECT_LOCKSTEP_ERROR(preflight_result(wrong_geometry, output, context()), ErrorCode::kSchema,
                        "tensor 'output[0]' has shape [16, 64], geometry requires [8, 64]");
  const std::vector<TensorView> latents{t.latents_view()};
  EXPECT_LOCKSTEP_ERROR(preflight_result(wire_test::infer_result(), latents, context()), ErrorCode::kSchema,
                        "tensor 'output[0]' is required and missing");
  Result no_calls = wire_test::infer_result();
  no_calls.observed_generator_calls = 0;
  EXPECT_LOCKSTEP_ERROR(preflight_result(no_calls, output, context()), ErrorCode::kSchema,
                        "observed_generator_calls is 0");
  Result noop_with_tensor;
  noop_with_tensor.action = Action::kNoop;
  noop_with_tensor.kv_frames = 0;
  EXPECT_LOCKSTEP_ERROR(preflight_result(noop_with_tensor, output, context()), ErrorCode::kSchema,
                        "NOOP result carries tensors");
  Result error_without_reason;
  error_without_reason.action = Action::kError;
  error_without_reason.kv_frames = 0;
  EXPECT_LOCKSTEP_ERROR(preflight_result(error_without_reason, {}, context()), ErrorCode::kSchema,
                        "result error_reason is required");
}

TEST(Result, MetaInAResultHeaderIsRejected) {
  const wire_test::Tensors t;
  const std::vector<TensorView> views{t.output_view()};
  auto frame = wire_test::to_vector(preflight_result(wire_test::infer_result(), views, context()).frame());
  wire_detail::store_le(frame.data() + frame_layout::kMetaCount, 1, 2);
  wire_test::reseal_header(frame);
  EXPECT_LOCKSTEP_ERROR(decode_result(frame, expectations()), ErrorCode::kDecode, "only envelopes carry meta");
}

TEST(Result, AnEnvelopeIsNotAResult) {
  const auto envelope = preflight_envelope(Envelope{}, {}, context());
  EXPECT_LOCKSTEP_ERROR(decode_result(envelope.frame(), expectations()), ErrorCode::kDecode,
                        "frame kind is envelope, expected result");
}

TEST(Control, HelloIsAlwaysHandshakeVersionAndCarriesTheRange) {
  const PreparedControl hello = preflight_control(hello_control(), context(2));
  EXPECT_EQ(hello.header().version, kHandshakeProtocolVersion);
  EXPECT_EQ(hello.header().action, Action::kNoop);
  // Decodable before negotiation and whatever version was negotiated later.
  for (const ProtocolVersion expected : {ProtocolVersion{0}, ProtocolVersion{2}}) {
    const DecodedControl decoded = decode_control(hello.frame(), expectations(expected));
    EXPECT_EQ(decoded.control.kind, ControlKind::kHello);
    EXPECT_EQ(decoded.control.versions, supported_protocol_versions());
  }
}

TEST(Control, HandshakeRefusesARankOfAnotherVersionWithADiff) {  // A4
  Control future = hello_control();
  future.versions = VersionRange{3, 4};  // what a newer build would announce
  std::vector<VersionRange> announced;
  for (const Control& c : {hello_control(), hello_control(), future}) {
    announced.push_back(decode_control(preflight_control(c, context()).frame(), expectations(0)).control.versions);
  }
  EXPECT_LOCKSTEP_ERROR(negotiate_protocol_version(announced), ErrorCode::kVersion, "rank 2: [3, 4]  <- lacks v2");
}

TEST(Control, ErrorBroadcastRoundTripsAtTheNegotiatedVersion) {  // B6
  Control error;
  error.kind = ControlKind::kError;
  error.ids = CallIds{12, 6, 1};
  error.reason = "leader: envelope 12 failed schema: plan.timesteps has 3 entries";
  const PreparedControl prepared = preflight_control(error, context(1));
  EXPECT_EQ(prepared.header().action, Action::kError);
  EXPECT_EQ(decode_control(prepared.frame(), expectations(1)).control, error);
  EXPECT_LOCKSTEP_ERROR(decode_control(prepared.frame(), expectations(2)), ErrorCode::kVersion, "expected 2");
}

TEST(Control, SchemaViolations) {
  Control bad_range = hello_control();
  bad_range.versions = VersionRange{2, 1};
  EXPECT_LOCKSTEP_ERROR(preflight_control(bad_range, context()), ErrorCode::kSchema, "HELLO control versions [2, 1]");
  Control hello_reason = hello_control();
  hello_reason.reason = "hi";
  EXPECT_LOCKSTEP_ERROR(preflight_control(hello_reason, context()), ErrorCode::kSchema, "HELLO control carries a reason");
  Control error_without_reason;
  error_without_reason.kind = ControlKind::kError;
  EXPECT_LOCKSTEP_ERROR(preflight_control(error_without_reason, context()), ErrorCode::kSchema,
                        "control error_reason is required");
  Control unknown;
  unknown.kind = static_cast<ControlKind>(7);
  EXPECT_LOCKSTEP_ERROR(preflight_control(unknown, context()), ErrorCode::kSchema, "control kind 7 is not HELLO");
}

TEST(Control, PayloadReadyRoundTripsAndCarriesNothingElse) {
  Control ready;
  ready.kind = ControlKind::kPayloadReady;
  ready.ids = CallIds{7, 3, 1};
  const PreparedControl prepared = preflight_control(ready, context(2));
  EXPECT_EQ(prepared.header().action, Action::kInfer);
  EXPECT_EQ(decode_control(prepared.frame(), expectations(2)).control, ready);
  Control with_reason = ready;
  with_reason.reason = "x";
  EXPECT_LOCKSTEP_ERROR(preflight_control(with_reason, context()), ErrorCode::kSchema,
                        "PAYLOAD_READY control carries a reason");
  Control with_versions = ready;
  with_versions.versions = VersionRange{1, 2};
  EXPECT_LOCKSTEP_ERROR(preflight_control(with_versions, context()), ErrorCode::kSchema,
                        "PAYLOAD_READY control carries versions");
  Control no_call = ready;
  no_call.ids.call_id = 0;
  EXPECT_LOCKSTEP_ERROR(preflight_control(no_call, context()), ErrorCode::kSchema, "names call_id 0");
}

TEST(Control, HeaderActionMustMatchTheBody) {
  auto frame = wire_test::to_vector(preflight_control(hello_control(), context()).frame());
  frame[frame_layout::kAction] = static_cast<std::uint8_t>(Action::kShutdown);
  wire_test::reseal_header(frame);
  EXPECT_LOCKSTEP_ERROR(decode_control(frame, expectations()), ErrorCode::kSchema, "does not match its body kind");
}

}  // namespace
}  // namespace lockstep
