// Writes the committed seed corpus of decoder_fuzz (tests/fuzz/corpus/decoder):
// valid frames of every kind, action and version, each prefixed with the
// selector byte decoder_fuzz expects. Rerun after a wire format change:
//   build/<preset>/tests/fuzz/lockstep_fuzz_seed_corpus tests/fuzz/corpus/decoder
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "lockstep/control.h"
#include "lockstep/digest.h"
#include "lockstep/envelope.h"
#include "lockstep/result.h"

namespace lockstep {
namespace {

const std::vector<std::uint8_t> kTensorBytes(2 * 8 * 64 * 4, 0x5A);

// Each frame twice: as is, and with the reseal bit (see decoder_fuzz.cc) so
// mutations of it reach the body parsers.
void write_seed(const std::string& dir, const std::string& name, std::uint8_t selector,
                std::span<const std::uint8_t> frame) {
  constexpr std::uint8_t kResealBit = 0x10;
  for (const bool resealed : {false, true}) {
    std::ofstream out(dir + "/" + name + (resealed ? "_resealed" : ""), std::ios::binary);
    out.put(static_cast<char>(resealed ? selector | kResealBit : selector));
    out.write(reinterpret_cast<const char*>(frame.data()), static_cast<std::streamsize>(frame.size()));
  }
}

std::uint8_t selector(int decoder, ProtocolVersion expected_version) {
  return static_cast<std::uint8_t>(decoder | (expected_version << 2));
}

Envelope infer_envelope(bool recompute) {
  Envelope e;
  e.action = Action::kInfer;
  e.ids = CallIds{3, 2, 1};
  e.plan = Plan{7, 2, {1.0, 0.5}, recompute, !recompute, -0.25, plan_generator_calls(2, recompute)};
  e.geometry = Geometry{2, 8, 64};
  e.meta.set("prompt", std::string("fox"));
  e.meta.set("seed", std::int64_t{42});
  e.meta.set("scale", 5.5);
  e.meta.set("cut", true);
  e.meta.set("ids", std::vector<std::int64_t>{1, 2});
  e.meta.set("ws", std::vector<double>{0.5});
  e.meta.set("bs", std::vector<bool>{true});
  e.meta.set("tags", std::vector<std::string>{"a", "b"});
  return e;
}

void write_envelopes(const std::string& dir, const FrameContext& ctx) {
  const std::string v = std::to_string(ctx.version);
  for (const bool recompute : {false, true}) {
    std::vector<TensorView> views{{kLatentsKey, 0, DType::kF32, {16, 64}, {}, kTensorBytes}};
    if (recompute) views.push_back({kContextOverrideKey, 0, DType::kF32, {16, 64}, {}, kTensorBytes});
    const auto prepared = preflight_envelope(infer_envelope(recompute), views, ctx);
    write_seed(dir, "envelope_infer_v" + v + (recompute ? "_recompute" : ""), selector(0, ctx.version),
               prepared.frame());
  }
  Envelope error;
  error.action = Action::kError;
  error.error_reason = "stage 0 failed";
  write_seed(dir, "envelope_error_v" + v, selector(0, ctx.version), preflight_envelope(error, {}, ctx).frame());
  Envelope noop;
  write_seed(dir, "envelope_noop_v" + v, selector(0, 0), preflight_envelope(noop, {}, ctx).frame());
}

void write_results(const std::string& dir, const FrameContext& ctx) {
  const std::string v = std::to_string(ctx.version);
  Result r;
  r.action = Action::kInfer;
  r.ids = CallIds{3, 2, 1};
  r.plan_id = 7;
  r.observed_generator_calls = 3;
  r.geometry = Geometry{2, 8, 64};
  if (ctx.version >= kProtocolVersionResultKvFrames) r.kv_frames = 6;
  const std::vector<TensorView> output{{kOutputKey, 0, DType::kF32, {16, 64}, {}, kTensorBytes}};
  write_seed(dir, "result_infer_v" + v, selector(1, ctx.version), preflight_result(r, output, ctx).frame());
  Result error;
  error.action = Action::kError;
  error.error_reason = "mesh rank 1 timed out";
  if (ctx.version >= kProtocolVersionResultKvFrames) error.kv_frames = 0;
  write_seed(dir, "result_error_v" + v, selector(1, ctx.version), preflight_result(error, {}, ctx).frame());
}

void write_controls(const std::string& dir, const FrameContext& ctx) {
  write_seed(dir, "control_hello", selector(2, 0), preflight_control(hello_control(), ctx).frame());
  Control error;
  error.kind = ControlKind::kError;
  error.reason = "leader: invalid envelope";
  write_seed(dir, "control_error", selector(2, ctx.version), preflight_control(error, ctx).frame());
  write_seed(dir, "header_only", selector(3, 0), preflight_control(hello_control(), ctx).frame());
}

}  // namespace
}  // namespace lockstep

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  for (const lockstep::ProtocolVersion version : {lockstep::ProtocolVersion{1}, lockstep::ProtocolVersion{2}}) {
    const lockstep::FrameContext ctx{version, 1, lockstep::job_token_digest("fuzz-job", 0)};
    lockstep::write_envelopes(dir, ctx);
    lockstep::write_results(dir, ctx);
    if (version == lockstep::kProtocolVersionMax) lockstep::write_controls(dir, ctx);
  }
  return 0;
}
