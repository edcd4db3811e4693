#include "lockstep/overlap_meter.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "lockstep/error.h"

namespace lockstep {
namespace {

constexpr double kNsPerMs = 1e6;

void check_stage_ms(const char* field, double value, std::uint64_t chunk_index) {
  if (!std::isfinite(value) || value < 0) {
    throw Error(ErrorCode::kInvalidArgument, std::string("overlap meter: chunk ") + std::to_string(chunk_index) +
                                                 " has " + field + " = " + std::to_string(value));
  }
}

Distribution distribution(const std::vector<double>& values) {
  Distribution result;
  result.count = values.size();
  if (values.empty()) return result;
  result.median = percentile(values, 50);
  result.p90 = percentile(values, 90);
  result.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  return result;
}

}  // namespace

double percentile(std::vector<double> values, double percentile) {
  if (!(percentile > 0 && percentile <= 100)) {
    throw Error(ErrorCode::kInvalidArgument, "percentile " + std::to_string(percentile) + " outside (0, 100]");
  }
  if (values.empty()) return 0;
  const auto rank = static_cast<std::size_t>(std::ceil(percentile / 100.0 * static_cast<double>(values.size())));
  const std::size_t index = std::max<std::size_t>(rank, 1) - 1;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(index), values.end());
  return values[index];
}

const ChunkOverlap& OverlapMeter::record(const ChunkTiming& timing) {
  check_stage_ms("stage0_ms", timing.stage0_ms, timing.chunk_index);
  check_stage_ms("stage1_ms", timing.stage1_ms, timing.chunk_index);
  check_stage_ms("boundary_ms", timing.boundary_ms, timing.chunk_index);
  check_stage_ms("mesh_wait_ms", timing.mesh_wait_ms, timing.chunk_index);
  if (previous_emitted_ns_ && timing.emitted_ns < *previous_emitted_ns_) {
    throw Error(ErrorCode::kInvalidArgument, "overlap meter: chunk " + std::to_string(timing.chunk_index) +
                                                 " emitted before the previous chunk");
  }
  if (chunks_.size() >= kOverlapSamplesMax) {
    throw Error(ErrorCode::kLimit, "overlap meter: more than kOverlapSamplesMax = " +
                                       std::to_string(kOverlapSamplesMax) + " chunks");
  }
  ChunkOverlap chunk;
  chunk.timing = timing;
  if (previous_emitted_ns_) {
    chunk.has_period = true;
    chunk.period_ms = static_cast<double>(timing.emitted_ns - *previous_emitted_ns_) / kNsPerMs;
    chunk.hidden_ms = timing.stage0_ms + timing.stage1_ms - chunk.period_ms;
    chunk.mesh_idle_ms = std::max(0.0, chunk.period_ms - timing.stage1_ms);
    const double shorter_ms = std::min(timing.stage0_ms, timing.stage1_ms);
    chunk.has_score = shorter_ms > 0;
    if (chunk.has_score) chunk.score = chunk.hidden_ms / shorter_ms;
  }
  previous_emitted_ns_ = timing.emitted_ns;
  chunks_.push_back(chunk);
  return chunks_.back();
}

OverlapSummary OverlapMeter::summary() const {
  std::vector<double> stage0, stage1, boundary, mesh_wait, period, hidden, idle, score;
  for (const ChunkOverlap& chunk : chunks_) {
    stage0.push_back(chunk.timing.stage0_ms);
    boundary.push_back(chunk.timing.boundary_ms);
    mesh_wait.push_back(chunk.timing.mesh_wait_ms);
    stage1.push_back(chunk.timing.stage1_ms);
    if (chunk.has_period) {
      period.push_back(chunk.period_ms);
      hidden.push_back(chunk.hidden_ms);
      idle.push_back(chunk.mesh_idle_ms);
    }
    if (chunk.has_score) score.push_back(chunk.score);
  }
  OverlapSummary summary;
  summary.chunks = chunks_.size();
  summary.stage0_ms = distribution(stage0);
  summary.stage1_ms = distribution(stage1);
  summary.period_ms = distribution(period);
  summary.hidden_ms = distribution(hidden);
  summary.mesh_idle_ms = distribution(idle);
  summary.overlap_score = distribution(score);
  summary.boundary_ms = distribution(boundary);
  summary.mesh_wait_ms = distribution(mesh_wait);
  summary.mesh_idle_ms_total = std::accumulate(idle.begin(), idle.end(), 0.0);
  return summary;
}

}  // namespace lockstep
