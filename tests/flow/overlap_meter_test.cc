#include "lockstep/overlap_meter.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "lockstep/error.h"

namespace lockstep {
namespace {

constexpr std::int64_t kMs = 1'000'000;

TEST(Percentile, NearestRank) {
  const std::vector<double> values = {10, 1, 9, 2, 8, 3, 7, 4, 6, 5};
  EXPECT_EQ(percentile(values, 50), 5);
  EXPECT_EQ(percentile(values, 90), 9);
  EXPECT_EQ(percentile(values, 100), 10);
  EXPECT_EQ(percentile(values, 1), 1);
  EXPECT_EQ(percentile({4}, 50), 4);
  EXPECT_EQ(percentile({}, 50), 0);
  EXPECT_THROW(percentile(values, 0), Error);
  EXPECT_THROW(percentile(values, 101), Error);
}

TEST(OverlapMeter, BackToBackStagesHideNothing) {
  OverlapMeter meter;
  for (int i = 0; i < 5; ++i) meter.record({static_cast<std::uint64_t>(i), 10, 10, i * 20 * kMs});
  const OverlapSummary summary = meter.summary();
  EXPECT_EQ(summary.chunks, 5u);
  EXPECT_EQ(summary.period_ms.count, 4u);
  EXPECT_DOUBLE_EQ(summary.period_ms.median, 20);
  EXPECT_DOUBLE_EQ(summary.hidden_ms.median, 0);
  EXPECT_DOUBLE_EQ(summary.overlap_score.median, 0);
  EXPECT_DOUBLE_EQ(summary.mesh_idle_ms.median, 10);
  EXPECT_DOUBLE_EQ(summary.mesh_idle_ms_total, 40);
}

TEST(OverlapMeter, FullyHiddenShorterStageScoresOne) {
  OverlapMeter meter;
  for (int i = 0; i < 4; ++i) meter.record({static_cast<std::uint64_t>(i), 4, 10, i * 10 * kMs});
  const OverlapSummary summary = meter.summary();
  EXPECT_DOUBLE_EQ(summary.period_ms.median, 10);
  EXPECT_DOUBLE_EQ(summary.hidden_ms.median, 4);
  EXPECT_DOUBLE_EQ(summary.overlap_score.median, 1);
  EXPECT_DOUBLE_EQ(summary.mesh_idle_ms_total, 0);
  EXPECT_DOUBLE_EQ(summary.stage0_ms.median, 4);
  EXPECT_DOUBLE_EQ(summary.stage1_ms.p90, 10);
}

TEST(OverlapMeter, PerChunkValuesAndSegmentBreak) {
  OverlapMeter meter;
  EXPECT_FALSE(meter.record({0, 6, 8, 0}).has_period);
  const ChunkOverlap second = meter.record({1, 6, 8, 11 * kMs});
  EXPECT_TRUE(second.has_period);
  EXPECT_DOUBLE_EQ(second.period_ms, 11);
  EXPECT_DOUBLE_EQ(second.hidden_ms, 3);
  EXPECT_DOUBLE_EQ(second.score, 0.5);
  EXPECT_DOUBLE_EQ(second.mesh_idle_ms, 3);
  meter.break_segment();  // hard cut: the drain is not a period
  const ChunkOverlap after_cut = meter.record({2, 6, 8, 500 * kMs});
  EXPECT_FALSE(after_cut.has_period);
  EXPECT_FALSE(after_cut.has_score);
  EXPECT_EQ(meter.summary().period_ms.count, 1u);
}

// The boundary's cost and the mesh's own wait are reported beside the
// stages, never folded into them.
TEST(OverlapMeter, BoundaryTimeAndMeshWaitAreTheirOwnDistributions) {
  OverlapMeter meter;
  for (int i = 0; i < 4; ++i) {
    meter.record({static_cast<std::uint64_t>(i), 4, 10, i * 12 * kMs, static_cast<double>(1 + i),
                  static_cast<double>(10 * i)});
  }
  const OverlapSummary summary = meter.summary();
  EXPECT_EQ(summary.boundary_ms.count, 4u);
  EXPECT_DOUBLE_EQ(summary.boundary_ms.median, 2);
  EXPECT_DOUBLE_EQ(summary.boundary_ms.p90, 4);
  EXPECT_EQ(summary.mesh_wait_ms.count, 4u);
  EXPECT_DOUBLE_EQ(summary.mesh_wait_ms.median, 10);
  EXPECT_DOUBLE_EQ(summary.stage1_ms.median, 10);  // unchanged by them
  EXPECT_THROW(meter.record({4, 1, 1, 60 * kMs, -1}), Error);
  EXPECT_THROW(meter.record({4, 1, 1, 60 * kMs, 0, -1}), Error);
}

TEST(OverlapMeter, ZeroStageHasNoScore) {
  OverlapMeter meter;
  meter.record({0, 0, 5, 0});
  const ChunkOverlap chunk = meter.record({1, 0, 5, 5 * kMs});
  EXPECT_TRUE(chunk.has_period);
  EXPECT_FALSE(chunk.has_score);
  EXPECT_EQ(meter.summary().overlap_score.count, 0u);
}

TEST(OverlapMeter, RejectsInvalidSamplesWithoutRecording) {
  OverlapMeter meter;
  meter.record({0, 1, 1, 10 * kMs});
  EXPECT_THROW(meter.record({1, -1, 1, 11 * kMs}), Error);
  EXPECT_THROW(meter.record({1, 1, std::numeric_limits<double>::quiet_NaN(), 11 * kMs}), Error);
  EXPECT_THROW(meter.record({1, 1, 1, 9 * kMs}), Error);
  EXPECT_EQ(meter.chunks().size(), 1u);
  EXPECT_DOUBLE_EQ(meter.record({1, 1, 1, 12 * kMs}).period_ms, 2);
}

}  // namespace
}  // namespace lockstep
