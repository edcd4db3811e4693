// The overlap meter of SPEC §4E: per emitted chunk, Stage 0's own time, the
// mesh-reported time and the emit timestamp; from them the period, the
// hidden time, the mesh idle time and the OverlapScore. Pure arithmetic on
// the values it is given — no clock inside, so the simulator drives it too.
//
// Definitions (per chunk i that has a predecessor in the same segment):
//   period_ms    = emit time of i − emit time of i−1
//   hidden_ms    = stage0_ms + stage1_ms − period_ms
//   score        = hidden_ms / min(stage0_ms, stage1_ms)   (chunks with
//                  min(...) == 0 have no score)
//   mesh_idle_ms = max(0, period_ms − stage1_ms)   (per period, the time the
//                  mesh was not generating)
// OverlapScore = median of the scores: ~1 when the shorter stage is fully
// hidden behind the longer, ~0 when the stages run back to back.
// A hard cut starts a new segment (break_segment): the first chunk after it
// has no period, so a drain never counts as a slow period.
//
// Percentiles are nearest-rank: p-th of n sorted values is element
// ceil(p/100 · n) − 1 (the median is p50).
//
// Threads: not thread-safe; one owner (Stage 0's decode/emit thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace lockstep {

// Samples kept for the summary (one per emitted chunk).
inline constexpr std::size_t kOverlapSamplesMax = std::size_t{1} << 20;

struct ChunkTiming {
  std::uint64_t chunk_index = 0;
  double stage0_ms = 0;      // Stage 0 produce + decode time of this chunk
  double stage1_ms = 0;      // the mesh's reported generation time
  std::int64_t emitted_ns = 0;  // when Stage 0 emitted the output (its clock)
  // The boundary's own cost for this chunk as Stage 0 timed it: sending the
  // payload and receiving (and digest-checking) the result; 0 in tp. It
  // is part of neither stage time, so when it bounds the period it shows
  // here rather than as unexplained period above max(stage0, stage1).
  double boundary_ms = 0;
  // The mesh's own measure of its time between its previous step and this
  // chunk's: sending the previous result, pulling this payload, the fan-out
  // to the workers — Stage 0 or a worker answering late shows here. 0 in tp.
  double mesh_wait_ms = 0;
};

struct ChunkOverlap {
  ChunkTiming timing;
  bool has_period = false;  // false for the first chunk of a segment
  double period_ms = 0;
  double hidden_ms = 0;
  double mesh_idle_ms = 0;
  bool has_score = false;
  double score = 0;
};

struct Distribution {
  std::size_t count = 0;
  double median = 0;
  double p90 = 0;
  double mean = 0;
};

struct OverlapSummary {
  std::size_t chunks = 0;  // every recorded chunk
  Distribution stage0_ms;
  Distribution stage1_ms;
  Distribution period_ms;  // chunks with a period only (and so below)
  Distribution hidden_ms;
  Distribution mesh_idle_ms;
  Distribution overlap_score;  // .median is the OverlapScore
  Distribution boundary_ms;    // every recorded chunk
  Distribution mesh_wait_ms;   // every recorded chunk
  double mesh_idle_ms_total = 0;
};

// Nearest-rank percentile (0 < percentile <= 100) of values; 0 when empty.
// Non-blocking, pure. Throws Error{kInvalidArgument} for a percentile out of range.
double percentile(std::vector<double> values, double percentile);

class OverlapMeter {
 public:
  // Records one emitted chunk and returns its derived values. Throws
  // Error{kInvalidArgument} for negative or non-finite stage times or an
  // emit time before the previous one in the segment, Error{kLimit} past
  // kOverlapSamplesMax chunks. A throw records nothing.
  const ChunkOverlap& record(const ChunkTiming& timing);

  // Hard cut: the next recorded chunk starts a new segment (no period).
  void break_segment() noexcept { previous_emitted_ns_.reset(); }

  // Non-blocking; O(n log n) over the recorded chunks.
  OverlapSummary summary() const;
  const std::vector<ChunkOverlap>& chunks() const noexcept { return chunks_; }

 private:
  std::vector<ChunkOverlap> chunks_;
  std::optional<std::int64_t> previous_emitted_ns_;
};

}  // namespace lockstep
