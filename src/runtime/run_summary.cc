#include "run_summary.h"

#include <nlohmann/json.hpp>

#include "lockstep/digest.h"
#include "lockstep/run_config.h"

namespace lockstep {
namespace {

nlohmann::json distribution_json(const Distribution& distribution) {
  return {{"count", distribution.count}, {"median", distribution.median}, {"p90", distribution.p90},
          {"mean", distribution.mean}};
}

nlohmann::json overlap_json(const OverlapSummary& overlap) {
  const double max_stage = std::max(overlap.stage0_ms.median, overlap.stage1_ms.median);
  const double sum_stage = overlap.stage0_ms.median + overlap.stage1_ms.median;
  return {{"stage0_ms", distribution_json(overlap.stage0_ms)},
          {"stage1_ms", distribution_json(overlap.stage1_ms)},
          {"boundary_ms", distribution_json(overlap.boundary_ms)},
          {"mesh_wait_ms", distribution_json(overlap.mesh_wait_ms)},
          {"period_ms", distribution_json(overlap.period_ms)},
          {"hidden_ms", distribution_json(overlap.hidden_ms)},
          {"mesh_idle_ms_total", overlap.mesh_idle_ms_total},
          {"max_stage_ms", max_stage},
          {"sum_stage_ms", sum_stage},
          {"period_over_max", max_stage > 0 ? overlap.period_ms.median / max_stage : 0.0},
          {"period_over_sum", sum_stage > 0 ? overlap.period_ms.median / sum_stage : 0.0},
          {"overlap_score", overlap.overlap_score.median}};
}

}  // namespace

std::string run_summary_json(const RunSummary& summary, const RunConfig& config) {
  nlohmann::json emitted = nlohmann::json::array();
  for (const EmittedChunk& chunk : summary.emitted) {
    emitted.push_back({{"chunk_index", chunk.chunk_index}, {"call_id", chunk.call_id},
                       {"cache_epoch", chunk.cache_epoch}, {"output_digest", digest_hex(chunk.output_digest)}});
  }
  const double fps = summary.wall_s > 0 ? static_cast<double>(summary.emitted.size()) / summary.wall_s : 0.0;
  nlohmann::json json = {
      {"format", "lockstep.run_summary"},
      {"version", 1},
      {"config", {{"topology", topology_name(config.topology)}, {"nproc", config.nproc}, {"model", config.model},
                  {"backend", config.backend}, {"graph_capture", config.graph_capture}, {"chunks", config.chunks},
                  {"depth_in", config.depth_in}, {"depth_out", config.depth_out}, {"hard_cut_every", config.hard_cut_every},
                  {"recompute_every", config.recompute_every}, {"steps", config.num_denoise_steps}}},
      {"stage0_device", summary.stage0_device},
      {"chunks_requested", summary.chunks_requested},
      {"generation", summary.generation},
      {"first_chunk", summary.first_chunk},
      {"first_emit_unix_ms", summary.first_emit_unix_ms},
      {"chunks_emitted", summary.emitted.size()},
      {"wall_s", summary.wall_s},
      {"fps", fps},
      {"hard_cuts", summary.hard_cuts},
      {"recomputes", summary.recomputes},
      {"stale_drops", summary.stale_drops},
      {"duplicate_result_drops", summary.duplicate_drops},
      {"reordered", summary.reordered},
      {"discarded_at_cuts", summary.discarded_at_cuts},
      {"heartbeats", summary.heartbeats},
      {"payloads_pulled_ahead", summary.payloads_pulled_ahead},
      {"queues", {{"d_in", {{"capacity", summary.d_in_capacity}, {"high_water", summary.d_in_high_water}}},
                  {"d_out", {{"capacity", summary.d_out_capacity}, {"high_water", summary.d_out_high_water}}}}},
      {"overlap", overlap_json(summary.overlap)},
      {"emitted", emitted}};
  return json.dump(2) + "\n";
}

}  // namespace lockstep
