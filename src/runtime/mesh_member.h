// One mesh rank's generator side (SPEC §4B, §4F, §4H, §5): applies an admitted
// INFER envelope to the KV cache and the model (CPU or CUDA, behind
// MeshGenerator), counts generator calls against the plan, and runs the
// per-chunk cross-rank check. Used by the leader and worker loops (pp) and by
// rank 0 in tp.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "lockstep/envelope.h"
#include "lockstep/model_config.h"
#include "mesh_generator.h"
#include "rank_context.h"
#include "tensor_place.h"

namespace lockstep {

struct ChunkOutcome {
  // [tokens_per_chunk × dim] in the rank's tensor place; valid until the
  // next run_chunk.
  std::span<const float> output;
  std::uint32_t observed_generator_calls = 0;
  std::uint64_t input_digest = 0;
  std::uint64_t output_digest = 0;
  std::uint64_t kv_state_digest = 0;
  std::uint64_t ledger_digest = 0;
  std::uint32_t kv_frames = 0;
  std::uint64_t stage1_us = 0;
};

class MeshMember {
 public:
  // Loads this rank's weight shard (on the GPU when context.gpu is set) into
  // `generator` — or, after a warm recovery, keeps the one it holds when it
  // rebinds to this generation (mesh_generator.h) — and checks every mesh
  // rank's shard fingerprint (H2), computed from the weights now. `generator`
  // outlives the member (the rank keeps it across generations). Blocking:
  // one small all_gather over `mesh`.
  MeshMember(const RankContext& context, std::unique_ptr<MeshGenerator>& generator);

  // Runs one INFER envelope. `latents` and `context_override` are the
  // payload as received (the latter empty unless the plan recomputes), in
  // the rank's tensor place (tensor_place.h), where every digest of them is
  // computed too.
  // Throws Error{kSchema} (geometry, G2), Error{kKvLifecycle} (F3),
  // Error{kPlan} (B5), Error{kDigest}/{kLedger} from the chunk check (B4, F2,
  // H1) and what the communicator throws. Blocking in collectives only.
  ChunkOutcome run_chunk(const Envelope& envelope, std::span<const float> latents,
                         std::span<const float> context_override);

  const ModelConfig& model_config() const { return config_; }

 private:
  void check_geometry(const Envelope& envelope, std::size_t latents_floats,
                      std::size_t context_floats) const;
  void prepare_cache(const Envelope& envelope);
  void run_generator(const Envelope& envelope, std::span<const float> context_override);
  void before_generator_call(const Plan& plan, std::uint32_t observed) const;
  void inject_chunk_faults(const Envelope& envelope, std::span<float> x);

  const RankContext& context_;
  ModelConfig config_;
  MeshGenerator& generator_;
  TensorPlace& place_;
  PlacedFloats x_;  // the chunk's latents, then its output
};

}  // namespace lockstep
