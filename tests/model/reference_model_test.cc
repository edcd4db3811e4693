#include "lockstep/reference_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <string>
#include <vector>

#include "lockstep/acceptance.h"
#include "lockstep/error.h"
#include "lockstep/model_config.h"
#include "model/cpu/weights.h"
#include "support/error_of.h"

namespace lockstep {
namespace {

// TP = 1: the all-reduce is the identity; records every call.
class RecordingOps final : public TensorParallelOps {
 public:
  void all_reduce_sum(float*, std::size_t count) override { counts.push_back(count); }
  std::vector<std::size_t> counts;
};

using test::error_of;

std::vector<float> pattern(std::size_t count, float scale) {
  std::vector<float> out(count);
  for (std::size_t i = 0; i < count; ++i) out[i] = scale * static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
  return out;
}

TEST(ModelConfig, NamedConfigsFollowTheDoc) {
  const ModelConfig tiny = model_config_from_name("tiny");
  EXPECT_EQ(tiny.dim, 64);
  EXPECT_EQ(tiny.head_dim(), 16);
  EXPECT_EQ(tiny.tokens_per_chunk(), 16);
  const ModelConfig big = model_config_from_name("dit14b-layer");
  EXPECT_EQ(big.tokens_per_chunk(), 2160);  // SPEC §5
  EXPECT_EQ(big.mlp_hidden(), 4 * 5120);
  EXPECT_EQ(model_config_names().size(), 3u);
  for (std::string_view name : model_config_names()) EXPECT_EQ(model_config_from_name(name).name, name);
}

TEST(ModelConfig, UnknownNameListsTheValidOnes) {
  const Error error = error_of([] { model_config_from_name("huge"); });
  EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  const std::string message = error.what();
  for (std::string_view name : model_config_names()) EXPECT_NE(message.find(name), std::string::npos) << message;
}

TEST(ModelConfig, DigestSeparatesConfigsAndTpChecksDivisibility) {
  ModelConfig tiny = model_config_from_name("tiny");
  const std::uint64_t digest = model_config_digest(tiny);
  EXPECT_EQ(digest, model_config_digest(model_config_from_name("tiny")));
  EXPECT_NE(digest, model_config_digest(model_config_from_name("small")));
  tiny.window_frames += 1;
  EXPECT_NE(digest, model_config_digest(tiny));
  EXPECT_NO_THROW(check_tensor_parallel(tiny, 3, 4));
  EXPECT_THROW(check_tensor_parallel(tiny, 0, 3), Error);
  EXPECT_THROW(check_tensor_parallel(tiny, 4, 4), Error);
  EXPECT_THROW(check_tensor_parallel(tiny, 0, 0), Error);
}

TEST(Weights, SplitmixAndElementFormulas) {
  EXPECT_EQ(splitmix64(0), 0xE220A8397B1DCDAFULL);  // the published first output for state 0
  const ModelConfig tiny = model_config_from_name("tiny");
  const float bound = 1.0f / std::sqrt(64.0f);
  for (std::uint64_t row = 0; row < 8; ++row) {
    for (std::uint64_t col = 0; col < 8; ++col) {
      EXPECT_LE(std::fabs(reference_weight(tiny, 1234, 1, WeightTensor::kWq, row, col)), bound);
      EXPECT_LE(std::fabs(reference_weight(tiny, 1234, 0, WeightTensor::kW2, row, col)), 0.5f * bound);
      const float gain = reference_weight(tiny, 1234, 0, WeightTensor::kGainQ, 0, col);
      EXPECT_GE(gain, 0.9f);
      EXPECT_LE(gain, 1.1f);
    }
  }
  // Every element is a pure function of (seed, tensor, row, col).
  const std::uint64_t h = splitmix64(1234 ^ (std::uint64_t{16 + 3} << 56) ^ (std::uint64_t{5} << 28) ^ 7);
  const double u = static_cast<double>(h >> 11) / 9007199254740992.0;
  EXPECT_EQ(reference_weight(tiny, 1234, 1, WeightTensor::kWo, 5, 7), static_cast<float>((2 * u - 1) / 8.0));
}

TEST(Weights, ShardFingerprintsDifferPerRankAndSeedAndMatchTheInstance) {
  const ModelConfig tiny = model_config_from_name("tiny");
  RecordingOps ops;
  ReferenceModel model(tiny, 1, 2, 99, ops);
  const auto fingerprint = [&](std::uint64_t seed, int tp_rank, int tp_size) {
    return weight_shard_fingerprint(tiny, seed, tp_rank, tp_size, WeightStorage::kF32);
  };
  EXPECT_EQ(model.weight_fingerprint(), fingerprint(99, 1, 2));
  EXPECT_NE(fingerprint(99, 0, 2), fingerprint(99, 1, 2));
  EXPECT_NE(fingerprint(99, 1, 2), fingerprint(98, 1, 2));
  EXPECT_NE(fingerprint(99, 0, 1), fingerprint(99, 0, 2));
  // The CUDA model's storage is another byte string of the same weights.
  EXPECT_NE(weight_shard_fingerprint(tiny, 99, 1, 2, WeightStorage::kBf16Matrices), fingerprint(99, 1, 2));
  EXPECT_TRUE(ops.counts.empty());
}

// Round to nearest even, as __float2bfloat16: ties go to the even mantissa.
TEST(Weights, Bf16RoundingIsNearestEven) {
  EXPECT_EQ(detail::bf16_bits(1.0f), 0x3F80);
  EXPECT_EQ(detail::bf16_bits(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // tie, even stays
  EXPECT_EQ(detail::bf16_bits(std::bit_cast<float>(0x3F818000u)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(detail::bf16_bits(std::bit_cast<float>(0x3F808001u)), 0x3F81);  // above the tie
  EXPECT_EQ(detail::bf16_bits(-2.0f), 0xC000);
}

TEST(ReferenceModel, FailsBeforeAnyCollectiveOnLifecycleShapeAndPlanErrors) {
  const ModelConfig tiny = model_config_from_name("tiny");
  RecordingOps ops;
  ReferenceModel model(tiny, 0, 1, kReferenceSeedDefault, ops);
  std::vector<float> x(static_cast<std::size_t>(tiny.tokens_per_chunk() * tiny.dim));
  EXPECT_EQ(error_of([&] { model.denoise(x, 0.5f); }).code(), ErrorCode::kKvLifecycle);  // no init_cache
  EXPECT_EQ(error_of([&] { model.recompute(x); }).code(), ErrorCode::kKvLifecycle);
  model.cache().init(0, 0, 0.0f);
  std::vector<float> short_x(x.size() - 1);
  EXPECT_EQ(error_of([&] { model.denoise(short_x, 0.5f); }).code(), ErrorCode::kSchema);
  const std::vector<float> too_long(static_cast<std::size_t>((tiny.window_frames + 1) * tiny.tokens_per_frame * tiny.dim));
  EXPECT_EQ(error_of([&] { model.recompute(too_long); }).code(), ErrorCode::kSchema);
  EXPECT_EQ(error_of([&] { model.recompute(std::vector<float>{}); }).code(), ErrorCode::kSchema);
  EXPECT_EQ(error_of([&] { model.commit_chunk(); }).code(), ErrorCode::kPlan);
  EXPECT_TRUE(ops.counts.empty());
  EXPECT_EQ(model.generator_calls(), 0u);
}

TEST(ReferenceModel, EachCallIssuesTheDocumentedAllReduceSequence) {
  const ModelConfig tiny = model_config_from_name("tiny");
  RecordingOps ops;
  ReferenceModel model(tiny, 0, 1, kReferenceSeedDefault, ops);
  model.cache().init(0, 0, 0.0f);
  std::vector<float> x = pattern(static_cast<std::size_t>(tiny.tokens_per_chunk() * tiny.dim), 1.0f);
  model.denoise(x, 0.5f);
  const std::size_t n = static_cast<std::size_t>(tiny.tokens_per_chunk());
  const std::size_t nd = n * static_cast<std::size_t>(tiny.dim);
  std::vector<std::size_t> expected;
  for (int layer = 0; layer < tiny.layers; ++layer) expected.insert(expected.end(), {2 * n, nd, nd});
  EXPECT_EQ(ops.counts, expected);
  ops.counts.clear();
  model.commit_chunk();
  model.recompute(pattern(static_cast<std::size_t>(tiny.tokens_per_frame * tiny.dim), 1.0f));  // C = 1 frame
  const std::size_t c = static_cast<std::size_t>(tiny.tokens_per_frame);
  expected.clear();
  for (int layer = 0; layer < tiny.layers; ++layer) {
    expected.insert(expected.end(), {2 * c, c * static_cast<std::size_t>(tiny.dim), c * static_cast<std::size_t>(tiny.dim)});
  }
  EXPECT_EQ(ops.counts, expected);
  EXPECT_EQ(model.generator_calls(), 2u);
}

TEST(ReferenceModel, CallsReadTheCacheAndOnlyCommitAndRecomputeMutateIt) {
  const ModelConfig tiny = model_config_from_name("tiny");
  RecordingOps ops;
  ReferenceModel model(tiny, 0, 1, kReferenceSeedDefault, ops);
  model.cache().init(0, 0, 0.0f);
  const std::size_t latent_floats = static_cast<std::size_t>(tiny.tokens_per_chunk() * tiny.dim);
  std::vector<float> first = pattern(latent_floats, 1.0f);
  model.denoise(first, 0.7f);
  EXPECT_EQ(model.cache().frames_held(), 0);
  model.commit_chunk();
  EXPECT_EQ(model.cache().frames_held(), tiny.frames_per_chunk);
  EXPECT_EQ(error_of([&] { model.commit_chunk(); }).code(), ErrorCode::kPlan);  // never twice
  const std::uint64_t digest = model.cache().state_digest();
  const std::uint64_t contents = model.cache().content_checksum();
  std::vector<float> with_cache = pattern(latent_floats, 1.0f);
  model.denoise(with_cache, 0.7f);
  EXPECT_EQ(model.cache().state_digest(), digest);
  EXPECT_EQ(model.cache().content_checksum(), contents);
  EXPECT_NE(with_cache, first);  // the cached frames are attended to
  model.recompute(pattern(static_cast<std::size_t>(2 * tiny.tokens_per_frame * tiny.dim), 0.5f));
  EXPECT_EQ(model.cache().frames_held(), 2);
  EXPECT_NE(model.cache().content_checksum(), contents);
  EXPECT_EQ(error_of([&] { model.commit_chunk(); }).code(), ErrorCode::kPlan);  // recompute clears pending
}

// A transport that fails on its `fail_at`-th all-reduce (a peer died mid-call).
class FailingOps final : public TensorParallelOps {
 public:
  explicit FailingOps(int fail_at) : fail_at_(fail_at) {}
  void all_reduce_sum(float*, std::size_t) override {
    if (++calls_ == fail_at_) throw Error(ErrorCode::kPeerFailure, "mesh rank 1 died");
  }

 private:
  int fail_at_;
  int calls_ = 0;
};

TEST(ReferenceModel, TransportFailureMidCallLeavesNoPartialCacheMutation) {
  const ModelConfig tiny = model_config_from_name("tiny");
  FailingOps ops(/*fail_at=*/3 * tiny.layers + 2);  // inside the second call
  ReferenceModel model(tiny, 0, 1, kReferenceSeedDefault, ops);
  model.cache().init(0, 0, 0.0f);
  std::vector<float> x = pattern(static_cast<std::size_t>(tiny.tokens_per_chunk() * tiny.dim), 1.0f);
  model.denoise(x, 0.5f);
  model.commit_chunk();
  const std::uint64_t digest = model.cache().state_digest();
  const std::uint64_t contents = model.cache().content_checksum();
  const std::vector<float> context = pattern(static_cast<std::size_t>(2 * tiny.tokens_per_frame * tiny.dim), 1.0f);
  EXPECT_EQ(error_of([&] { model.recompute(context); }).code(), ErrorCode::kPeerFailure);
  EXPECT_EQ(model.cache().state_digest(), digest);
  EXPECT_EQ(model.cache().content_checksum(), contents);
  EXPECT_EQ(model.generator_calls(), 1u);  // the failed call is not counted
  EXPECT_EQ(error_of([&] { model.commit_chunk(); }).code(), ErrorCode::kPlan);
}

// The mesh-side rule end to end: a resent envelope is dropped by the
// sequencer, so the model's cache sees the chunk's mutation exactly once.
TEST(ReferenceModel, DuplicateEnvelopeNeverReappliesTheCacheMutation) {
  const ModelConfig tiny = model_config_from_name("tiny");
  RecordingOps ops;
  ReferenceModel model(tiny, 0, 1, kReferenceSeedDefault, ops);
  EnvelopeSequencer sequencer(0, 0, 0);
  model.cache().init(0, 0, 0.0f);
  const std::vector<EnvelopeIds> stream = {{0, 0, 0, 10}, {1, 0, 1, 11}, {1, 0, 1, 11}, {2, 0, 2, 12}};
  for (const EnvelopeIds& ids : stream) {
    if (sequencer.admit(ids).verdict == EnvelopeVerdict::kDuplicate) continue;
    std::vector<float> x = pattern(static_cast<std::size_t>(tiny.tokens_per_chunk() * tiny.dim), 1.0f);
    model.denoise(x, 0.5f);
    model.commit_chunk();
  }
  EXPECT_EQ(sequencer.duplicate_drops(), 1u);
  EXPECT_EQ(model.generator_calls(), 3u);
  EXPECT_EQ(model.cache().state_record().global_end_frame, 3 * tiny.frames_per_chunk);
}

TEST(ReferenceModel, DeterministicAcrossInstances) {
  const ModelConfig tiny = model_config_from_name("tiny");
  std::vector<std::vector<float>> outputs;
  for (int instance = 0; instance < 2; ++instance) {
    RecordingOps ops;
    ReferenceModel model(tiny, 0, 1, kReferenceSeedDefault, ops);
    model.cache().init(0, 0, 0.0f);
    std::vector<float> x = pattern(static_cast<std::size_t>(tiny.tokens_per_chunk() * tiny.dim), 1.0f);
    for (int chunk = 0; chunk < 4; ++chunk) {
      model.denoise(x, 0.5f);
      model.commit_chunk();
    }
    outputs.push_back(x);
  }
  EXPECT_EQ(outputs[0], outputs[1]);
}

}  // namespace
}  // namespace lockstep
