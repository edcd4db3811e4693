#include "lockstep/kv_cache.h"

#include <gtest/gtest.h>

#include <vector>

#include "lockstep/error.h"
#include "support/error_of.h"

namespace lockstep {
namespace {

constexpr int kWindow = 3;

KvGeometry geometry(int local_heads) {
  return KvGeometry{/*layers=*/2, local_heads, /*head_dim=*/2, /*tokens_per_frame=*/2, kWindow};
}

// Frames whose every float encodes (layer, stream frame, k/v, shard) so
// eviction order and layout are visible.
KvFrames frames_from(const KvGeometry& g, int first_frame, int count, float shard = 0) {
  KvFrames out;
  out.frames = count;
  for (int layer = 0; layer < g.layers; ++layer) {
    std::vector<float> k, v;
    for (int frame = first_frame; frame < first_frame + count; ++frame) {
      for (std::size_t i = 0; i < g.frame_floats(); ++i) {
        k.push_back(static_cast<float>(layer * 1000 + frame) + shard);
        v.push_back(-static_cast<float>(layer * 1000 + frame) - shard);
      }
    }
    out.k.push_back(k);
    out.v.push_back(v);
  }
  return out;
}

using test::code_of;

std::vector<float> held_frame_ids(const KvCache& cache, int layer) {
  std::vector<float> ids;
  for (int frame = 0; frame < cache.frames_held(); ++frame) ids.push_back(cache.keys(layer, frame)[0]);
  return ids;
}

TEST(KvCache, RingEvictsOldestFramesBeyondTheWindow) {
  const KvGeometry g = geometry(2);
  KvCache cache(g);
  cache.init(0, 10, 0.0f);
  EXPECT_EQ(cache.state(), KvState::kFilling);
  cache.append(frames_from(g, 10, 2));
  EXPECT_EQ(cache.state(), KvState::kFilling);
  cache.append(frames_from(g, 12, 2));
  EXPECT_EQ(cache.state(), KvState::kRolling);
  EXPECT_EQ(held_frame_ids(cache, 0), (std::vector<float>{11, 12, 13}));
  EXPECT_EQ(held_frame_ids(cache, 1), (std::vector<float>{1011, 1012, 1013}));
  cache.append(frames_from(g, 14, 2));
  EXPECT_EQ(held_frame_ids(cache, 0), (std::vector<float>{13, 14, 15}));
  EXPECT_EQ(cache.values(1, 2)[0], -1015.0f);
  const KvStateRecord record = cache.state_record();
  EXPECT_EQ(record.start_frame, 13);
  EXPECT_EQ(record.global_end_frame, 16);
  EXPECT_EQ(record.frames_held, 3);
  EXPECT_EQ(record.local_end_slot, 6 % kWindow);
}

TEST(KvCache, IllegalOrMalformedMutationsChangeNothing) {
  const KvGeometry g = geometry(2);
  KvCache cache(g);
  EXPECT_EQ(code_of([&] { cache.append(frames_from(g, 0, 1)); }), ErrorCode::kKvLifecycle);
  EXPECT_EQ(code_of([&] { cache.replace_all(frames_from(g, 0, 1)); }), ErrorCode::kKvLifecycle);
  EXPECT_EQ(code_of([&] { cache.set_attention_bias(1.0f); }), ErrorCode::kKvLifecycle);
  cache.init(0, 0, 0.0f);
  cache.append(frames_from(g, 0, 2));
  const std::uint64_t digest = cache.state_digest();
  const std::uint64_t contents = cache.content_checksum();
  EXPECT_EQ(code_of([&] { cache.init(1, 0, 0.0f); }), ErrorCode::kKvLifecycle);  // no hard cut first
  EXPECT_EQ(code_of([&] { cache.append(frames_from(g, 2, kWindow + 1)); }), ErrorCode::kSchema);
  EXPECT_EQ(code_of([&] { cache.append(frames_from(geometry(1), 2, 1)); }), ErrorCode::kSchema);
  KvFrames missing_layer = frames_from(g, 2, 1);
  missing_layer.v.pop_back();
  EXPECT_EQ(code_of([&] { cache.replace_all(missing_layer); }), ErrorCode::kSchema);
  EXPECT_EQ(code_of([&] { cache.keys(0, 2); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { cache.keys(2, 0); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(cache.state_digest(), digest);
  EXPECT_EQ(cache.content_checksum(), contents);
  EXPECT_EQ(cache.state(), KvState::kFilling);
}

TEST(KvCache, RecomputeReplacesEverythingEndingAtTheGlobalEnd) {
  const KvGeometry g = geometry(2);
  KvCache cache(g);
  cache.init(4, 0, 0.0f);
  cache.append(frames_from(g, 0, 2));
  cache.append(frames_from(g, 2, 2));
  ASSERT_EQ(cache.state(), KvState::kRolling);
  cache.replace_all(frames_from(g, 100, 2));
  EXPECT_EQ(cache.state(), KvState::kFilling);
  EXPECT_EQ(held_frame_ids(cache, 0), (std::vector<float>{100, 101}));
  const KvStateRecord record = cache.state_record();
  EXPECT_EQ(record.recompute_count, 1u);
  EXPECT_EQ(record.global_end_frame, 4);
  EXPECT_EQ(record.start_frame, 2);
  cache.append(frames_from(g, 4, 1));
  EXPECT_EQ(cache.state(), KvState::kRolling);
  EXPECT_EQ(held_frame_ids(cache, 0), (std::vector<float>{100, 101, 4}));
  cache.replace_all(frames_from(g, 200, kWindow));
  EXPECT_EQ(cache.state(), KvState::kRolling);
}

TEST(KvCache, HardCutEmptiesAndAllowsANewEpoch) {
  const KvGeometry g = geometry(2);
  KvCache cache(g);
  cache.init(0, 0, 0.5f);
  cache.append(frames_from(g, 0, 2));
  cache.hard_cut();
  EXPECT_EQ(cache.state(), KvState::kEmpty);
  EXPECT_EQ(cache.frames_held(), 0);
  cache.hard_cut();  // legal when already empty
  cache.init(1, 2, 0.0f);
  EXPECT_EQ(cache.state_record().cache_epoch, 1u);
  EXPECT_EQ(cache.state_record().start_frame, 2);
  EXPECT_EQ(cache.attention_bias(), 0.0f);
}

TEST(KvCache, ContentChecksumIgnoresRingPosition) {
  const KvGeometry g = geometry(2);
  KvCache rolled(g);
  rolled.init(0, 0, 0.0f);
  rolled.append(frames_from(g, 0, 2));
  rolled.append(frames_from(g, 2, 2));  // holds 1, 2, 3 starting at slot 1
  KvCache fresh(g);
  fresh.init(0, 0, 0.0f);
  fresh.append(frames_from(g, 1, 3));  // holds 1, 2, 3 starting at slot 0
  EXPECT_EQ(rolled.content_checksum(), fresh.content_checksum());
  EXPECT_NE(rolled.state_digest(), fresh.state_digest());
}

// F2's precondition: shards hold different floats but the same bookkeeping.
TEST(KvCache, StateDigestEqualAcrossShardsAndTripsOnOutOfBandReset) {
  KvCache shard0(geometry(2));
  KvCache shard1(geometry(2));
  const auto step = [](KvCache& cache, int first_frame, float shard) {
    cache.append(frames_from(cache.geometry(), first_frame, 2, shard));
  };
  for (KvCache* cache : {&shard0, &shard1}) cache->init(7, 0, 0.25f);
  for (int chunk = 0; chunk < 4; ++chunk) {
    step(shard0, chunk * 2, 0.5f);
    step(shard1, chunk * 2, 0.75f);
    EXPECT_EQ(shard0.state_digest(), shard1.state_digest()) << chunk;
    EXPECT_NE(shard0.content_checksum(), shard1.content_checksum());
  }
  // An out-of-band reset on one rank that even re-inits to the same epoch.
  shard1.hard_cut();
  shard1.init(7, 0, 0.25f);
  EXPECT_NE(shard0.state_digest(), shard1.state_digest());
  step(shard1, 0, 0.75f);
  EXPECT_NE(shard0.state_digest(), shard1.state_digest());
}

TEST(KvCache, DigestCoversEveryReplicatedField) {
  const KvGeometry g = geometry(1);
  KvCache base(g), bias(g), epoch(g), start(g), recompute(g);
  base.init(1, 0, 0.0f);
  bias.init(1, 0, 0.0f);
  bias.set_attention_bias(-1.0f);
  epoch.init(2, 0, 0.0f);
  start.init(1, 5, 0.0f);
  recompute.init(1, 0, 0.0f);
  recompute.replace_all(frames_from(g, 0, 1));
  base.append(frames_from(g, 0, 1));
  for (const KvCache* other : {&bias, &epoch, &start, &recompute}) {
    EXPECT_NE(base.state_digest(), other->state_digest());
  }
}

TEST(KvCache, RejectsGeometryOutsideLimits) {
  EXPECT_EQ(code_of([] { KvCache cache(KvGeometry{0, 1, 1, 1, 1}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([] { KvCache cache(KvGeometry{1, 1, 1, 1, kKvWindowFramesMax + 1}); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([] { KvCache cache(KvGeometry{1, 4096, 4096, 4096, 1}); }), ErrorCode::kInvalidArgument);
  KvCache cache(geometry(1));
  EXPECT_EQ(code_of([&] { cache.init(0, -1, 0.0f); }), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace lockstep
