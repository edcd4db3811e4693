#include "lockstep/kv_ring.h"

#include <gtest/gtest.h>

#include <vector>

#include "lockstep/error.h"
#include "lockstep/kv_cache.h"
#include "support/error_of.h"

namespace lockstep {
namespace {

using test::code_of;

constexpr int kWindow = 3;

KvFrames zero_frames(const KvGeometry& g, int count) {
  const std::vector<float> floats(g.frame_floats() * static_cast<std::size_t>(count));
  return KvFrames{count, std::vector<std::vector<float>>(static_cast<std::size_t>(g.layers), floats),
                  std::vector<std::vector<float>>(static_cast<std::size_t>(g.layers), floats)};
}

// A cache whose tensors live elsewhere (the CUDA model's device ring) keeps
// a bare KvRing; the mesh compares its digest with the CPU cache's rule, so
// the two must agree event for event.
TEST(KvRing, DigestEqualsTheCpuCacheAfterTheSameEvents) {
  const KvGeometry g{2, 1, 2, 2, kWindow};
  KvCache cache(g);
  KvRing ring(kWindow);
  const auto same = [&] {
    EXPECT_EQ(ring.state_digest(), cache.state_digest());
    EXPECT_EQ(ring.frames_held(), cache.frames_held());
  };
  same();
  cache.init(4, 10, 0.5f);
  ring.init(4, 10, 0.5f);
  same();
  cache.append(zero_frames(g, 2));
  EXPECT_EQ(ring.append(2), 0);
  same();
  cache.append(zero_frames(g, 2));  // overflows: evicts one frame
  EXPECT_EQ(ring.append(2), 2);
  same();
  EXPECT_EQ(ring.state(), KvState::kRolling);
  EXPECT_EQ(ring.slot_of(0), 1);  // the oldest frame after the wrap
  cache.set_attention_bias(-1.0f);
  ring.set_attention_bias(-1.0f);
  same();
  cache.replace_all(zero_frames(g, 1));
  ring.replace_all(1);
  same();
  EXPECT_EQ(ring.state_record().recompute_count, 1u);
  cache.hard_cut();
  ring.hard_cut();
  same();
}

TEST(KvRing, IllegalEventsThrowAndMutateNothing) {
  KvRing ring(kWindow);
  EXPECT_EQ(code_of([&] { ring.append(1); }), ErrorCode::kKvLifecycle);  // empty: needs init
  ring.init(1, 0, 0.0f);
  const std::uint64_t before = ring.state_digest();
  EXPECT_EQ(code_of([&] { ring.init(2, 0, 0.0f); }), ErrorCode::kKvLifecycle);  // init on a live ring
  EXPECT_EQ(code_of([&] { ring.append(0); }), ErrorCode::kSchema);
  EXPECT_EQ(code_of([&] { ring.append(kWindow + 1); }), ErrorCode::kSchema);
  EXPECT_EQ(code_of([&] { ring.replace_all(kWindow + 1); }), ErrorCode::kSchema);
  EXPECT_EQ(code_of([&] { ring.slot_of(0); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ring.state_digest(), before);
}

TEST(KvRing, WindowOutsideItsLimitIsRefused) {
  EXPECT_EQ(code_of([] { KvRing ring(0); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([] { KvRing ring(kKvWindowFramesMax + 1); }), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace lockstep
