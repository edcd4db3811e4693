// What a run of the reference job did, as Stage 0 saw it: written to
// <job_dir>/summary.json at a clean end and printed by `lockstep run`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/overlap_meter.h"

namespace lockstep {

struct EmittedChunk {
  std::uint64_t chunk_index = 0;
  std::uint64_t call_id = 0;
  std::uint64_t cache_epoch = 0;
  std::uint64_t output_digest = 0;
};

struct RunSummary {
  std::string stage0_device = "cpu";  // "cuda:<index>" when Stage 0 has its own GPU
  std::int64_t chunks_requested = 0;
  // Warm recovery: the generation that completed the stream and the chunk it
  // resumed at (earlier chunks were emitted by earlier generations).
  std::uint32_t generation = 0;
  std::uint64_t first_chunk = 0;
  std::int64_t first_emit_unix_ms = 0;  // wall clock of this generation's first emit (0: none)
  std::vector<EmittedChunk> emitted;
  double wall_s = 0;
  std::uint64_t hard_cuts = 0;
  std::uint64_t recomputes = 0;
  std::uint64_t stale_drops = 0;
  std::uint64_t duplicate_drops = 0;      // results (Stage 0)
  std::uint64_t reordered = 0;
  std::uint64_t discarded_at_cuts = 0;    // accepted but flushed by a hard cut
  std::uint64_t heartbeats = 0;
  std::uint64_t payloads_pulled_ahead = 0;  // asked for before the previous result arrived (pp)
  std::size_t d_in_capacity = 0, d_in_high_water = 0;
  std::size_t d_out_capacity = 0, d_out_high_water = 0;
  OverlapSummary overlap;
};

struct RunConfig;

// The summary as JSON text (the `--json` output of `lockstep run`, with the
// configuration that produced it).
std::string run_summary_json(const RunSummary& summary, const RunConfig& config);

}  // namespace lockstep
