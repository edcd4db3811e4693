// `lockstep selfcheck`: proves on this machine, without peers or a backend,
// that the wire codec works end to end: a realistic envelope, result and
// HELLO go through preflight → encode → decode → validate in every supported
// protocol version, and a corrupted frame and an invalid envelope are
// refused. Prints one line per check; exit 0 when all pass, otherwise the
// exit code of the first failure's ErrorCode (main.cc) or 1.
#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "lockstep/control.h"
#include "lockstep/digest.h"
#include "lockstep/envelope.h"
#include "lockstep/error.h"
#include "lockstep/result.h"

namespace lockstep::cli {

namespace {

// The `tiny` reference chunk (docs/reference-model.md) with a recompute.
constexpr std::uint32_t kFrames = 2;
constexpr std::uint32_t kTokensPerFrame = 8;
constexpr std::uint32_t kDim = 64;
constexpr std::uint32_t kContextFrames = 6;
constexpr char kSelfcheckJobToken[] = "lockstep-selfcheck";

struct Chunk {
  std::vector<std::uint8_t> latents = std::vector<std::uint8_t>(kFrames * kTokensPerFrame * kDim * 4, 0x3F);
  std::vector<std::uint8_t> context =
      std::vector<std::uint8_t>(kContextFrames * kTokensPerFrame * kDim * 4, 0x3E);
  std::vector<std::uint8_t> output = std::vector<std::uint8_t>(kFrames * kTokensPerFrame * kDim * 4, 0x3D);
};

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorCode::kInternal, "selfcheck: " + what);
}

Envelope infer_envelope() {
  Envelope e;
  e.action = Action::kInfer;
  e.ids = CallIds{12, 11, 1};
  e.plan = Plan{11, 4, {1.0, 0.75, 0.5, 0.25}, true, false, -0.5, plan_generator_calls(4, true)};
  e.geometry = Geometry{kFrames, kTokensPerFrame, kDim};
  e.meta = meta_from_json(R"({"prompt": "a red fox in snow", "seed": 1234, "guidance": 5.0,
                              "hard_cut": false, "frame_range": [22, 24], "tags": ["fox", "snow"]})");
  return e;
}

void check_envelope(const Chunk& chunk, ProtocolVersion version) {
  const Envelope envelope = infer_envelope();
  const std::vector<TensorView> views{
      {kLatentsKey, 0, DType::kF32, {kFrames * kTokensPerFrame, kDim}, {}, chunk.latents},
      {kContextOverrideKey, 0, DType::kF32, {kContextFrames * kTokensPerFrame, kDim}, {}, chunk.context}};
  const FrameContext context{version, 0, job_token_digest(kSelfcheckJobToken, 0)};
  const PreparedEnvelope prepared = preflight_envelope(envelope, views, context);
  const DecodedEnvelope decoded =
      decode_envelope(prepared.frame(), FrameExpectations{context.job_token_digest, version});
  require(decoded.envelope == envelope, "envelope changed in the round trip");
  require(decoded.header == prepared.header(), "envelope header changed in the round trip");
  const PayloadBuffers buffers = allocate_payload(decoded.manifest);
  require(buffers.payload_bytes() == chunk.latents.size() + chunk.context.size(), "payload size differs");
  std::printf("ok  v%u envelope INFER: %zu-byte frame, %zu meta keys, %zu tensors (%llu payload bytes), "
              "meta digest %s\n",
              version, prepared.frame().size(), envelope.meta.size(), decoded.manifest.size(),
              static_cast<unsigned long long>(buffers.payload_bytes()), digest_hex(meta_digest(envelope.meta)).c_str());
}

void check_result(const Chunk& chunk, ProtocolVersion version) {
  Result result;
  result.action = Action::kInfer;
  result.ids = CallIds{12, 11, 1};
  result.plan_id = 11;
  result.observed_generator_calls = 5;
  result.geometry = Geometry{kFrames, kTokensPerFrame, kDim};
  result.durations = StageDurations{1800, 150};
  result.digests = ResultDigests{digest_string("kv"), digest_bytes(chunk.output), digest_bytes(chunk.latents),
                                 digest_string("ledger")};
  if (version >= kProtocolVersionResultKvFrames) result.kv_frames = kContextFrames + kFrames;
  const std::vector<TensorView> output{{kOutputKey, 0, DType::kF32, {kFrames * kTokensPerFrame, kDim}, {}, chunk.output}};
  const FrameContext context{version, 1, job_token_digest(kSelfcheckJobToken, 0)};
  const PreparedResult prepared = preflight_result(result, output, context);
  const DecodedResult decoded = decode_result(prepared.frame(), FrameExpectations{context.job_token_digest, version});
  require(decoded.result == result, "result changed in the round trip");
  std::printf("ok  v%u result INFER: %zu-byte frame, output digest %s%s\n", version, prepared.frame().size(),
              digest_hex(decoded.result.digests.output).c_str(), decoded.result.kv_frames ? ", kv_frames" : "");
}

void check_handshake() {
  const FrameContext context{kProtocolVersionMax, 0, job_token_digest(kSelfcheckJobToken, 0)};
  const PreparedControl hello = preflight_control(hello_control(), context);
  const DecodedControl decoded = decode_control(hello.frame(), FrameExpectations{context.job_token_digest, 0});
  const std::vector<VersionRange> ranks{decoded.control.versions, supported_protocol_versions()};
  const ProtocolVersion agreed = negotiate_protocol_version(ranks);
  require(agreed == kProtocolVersionMax, "negotiation did not pick the highest common version");
  std::printf("ok  HELLO handshake: this build speaks v%u..v%u, negotiated v%u\n", kProtocolVersionMin,
              kProtocolVersionMax, agreed);
}

// A check that is meant to throw: returns the error's code, or fails.
template <typename Fn>
ErrorCode expect_refusal(Fn&& fn, const std::string& what) {
  try {
    fn();
  } catch (const Error& e) {
    std::printf("ok  refused %s: %s\n", what.c_str(), e.what());
    return e.code();
  }
  throw Error(ErrorCode::kInternal, "selfcheck: " + what + " was accepted");
}

void check_refusals(const Chunk& chunk) {
  const FrameContext context{kProtocolVersionMax, 0, job_token_digest(kSelfcheckJobToken, 0)};
  const FrameExpectations expect{context.job_token_digest, kProtocolVersionMax};
  const std::vector<TensorView> latents_only{
      {kLatentsKey, 0, DType::kF32, {kFrames * kTokensPerFrame, kDim}, {}, chunk.latents}};
  const ErrorCode missing =
      expect_refusal([&] { preflight_envelope(infer_envelope(), latents_only, context); }, "recompute without override");
  require(missing == ErrorCode::kSchema, "missing override was not a schema error");
  const PreparedEnvelope noop = preflight_envelope(Envelope{}, {}, context);
  std::vector<std::uint8_t> corrupted(noop.frame().begin(), noop.frame().end());
  corrupted.back() ^= 0x01;
  const ErrorCode flipped = expect_refusal([&] { decode_envelope(corrupted, expect); }, "a flipped body bit");
  require(flipped == ErrorCode::kChecksum, "a flipped bit was not a checksum error");
}

void run_selfcheck() {
  const Chunk chunk;
  for (ProtocolVersion v = kProtocolVersionMin; v <= kProtocolVersionMax; ++v) {
    check_envelope(chunk, v);
    check_result(chunk, v);
  }
  check_handshake();
  check_refusals(chunk);
  std::printf("selfcheck passed: wire protocol v%u..v%u, header %zu bytes, frame limit %zu bytes\n",
              kProtocolVersionMin, kProtocolVersionMax, kHeaderBytes, kFrameBytesMax);
}

}  // namespace

void register_selfcheck(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "selfcheck", "Round-trip a realistic envelope, result and handshake through the wire codec and exit 0 if sound");
  cmd->callback(run_selfcheck);
}

}  // namespace lockstep::cli
