// The CPU reference generator of SPEC §5, implemented to the letter of
// docs/reference-model.md (fp32, OpenBLAS): one TP shard of a DiT-like model
// whose weights are generated shard-only from (seed, tensor, row, col), with
// a ring-buffer KV cache of this rank's heads. It reaches the mesh only
// through TensorParallelOps::all_reduce_sum — 3 per layer per generator
// call, in this order: [2N] QK-norm sums, [N·D] attention output, [N·D] MLP
// output (N = tokens of the call) — and does no other I/O.
//
// Every check that can fail (cache lifecycle, tensor shapes, plan order)
// happens before a call's first all-reduce, and the cache changes only after
// a call completed, so a failure never leaves ranks half-way through a
// collective sequence or with a half-applied cache mutation.
//
// Threads: not thread-safe; one thread (the mesh loop) owns an instance.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "lockstep/kv_cache.h"
#include "lockstep/model_config.h"
#include "lockstep/tensor_parallel_ops.h"

namespace lockstep::detail {
struct ModelShard;  // this rank's weights (src/model/cpu/weights.h)
}  // namespace lockstep::detail

namespace lockstep {

inline constexpr std::uint64_t kReferenceSeedDefault = 1234;

// Tensor kinds k of the doc (tensor_id = layer · 16 + k).
enum class WeightTensor : int {
  kWq = 0, kWk = 1, kWv = 2, kWo = 3, kW1 = 4, kW2 = 5,
  kGainAttn = 6, kGainMlp = 7, kGainQ = 8, kGainK = 9, kTimeEmbed = 10,
};

// splitmix64 as in the doc. Pure.
std::uint64_t splitmix64(std::uint64_t z) noexcept;
// 2u - 1 in [-1, 1) in double, u from the top 53 bits of `hash` (the doc's
// c; also Stage 0's synthetic inputs). Pure.
double signed_unit(std::uint64_t hash) noexcept;

// Element (row, col) of tensor `tensor` of `layer` for `seed`, exactly as the
// doc defines it (vectors use row 0, col = index). Pure; shards generated
// with it are exact slices of the full tensor.
float reference_weight(const ModelConfig& config, std::uint64_t seed, int layer, WeightTensor tensor,
                       std::uint64_t row, std::uint64_t col) noexcept;

// How a model holds its weights: the CPU model keeps every tensor in fp32;
// the CUDA model rounds the matrices (wq … w2) to bf16, round to nearest
// even, and keeps the vectors (gains, t_embed) in fp32.
enum class WeightStorage : int { kF32 = 0, kBf16Matrices = 1 };

// XXH3-64 over the bytes of the shard's tensors as `storage` holds them, in
// tensor_id order (layer-major, then k), each row-major as stored. A model
// fingerprints what it actually loaded with the same rule, so a mutated
// shard is named (H2). Generates the shard; pure but O(shard size). Throws
// as check_tensor_parallel.
std::uint64_t weight_shard_fingerprint(const ModelConfig& config, std::uint64_t seed, int tp_rank, int tp_size,
                                       WeightStorage storage);

class ReferenceModel {
 public:
  // Generates this rank's weight shard and an empty KV cache of its heads.
  // Throws Error{kInvalidArgument} as check_tensor_parallel. `ops` must
  // outlive the model.
  ReferenceModel(const ModelConfig& config, int tp_rank, int tp_size, std::uint64_t seed, TensorParallelOps& ops);
  ~ReferenceModel();
  ReferenceModel(const ReferenceModel&) = delete;
  ReferenceModel& operator=(const ReferenceModel&) = delete;

  // One denoise generator call: x ← F(x, timestep, cache). x is the chunk's
  // [tokens_per_chunk × D] latents, replicated on every mesh rank. Reads the
  // cache, never mutates it; the call's k, v become the pending frames that
  // commit_chunk() appends. Before any all-reduce it throws
  // Error{kKvLifecycle} if the cache cannot take an append (e.g. not
  // initialised) and Error{kSchema} if x has the wrong size. Blocking only
  // in the all-reduces.
  void denoise(std::span<float> x, float timestep);

  // The recompute generator call: runs the layers with t = 0 over
  // `context` ([C · tokens_per_frame × D], 1 <= C <= window) with an empty
  // cache and replaces the cache with its k, v (event recompute). Clears
  // pending frames. Before any all-reduce it throws Error{kKvLifecycle}
  // (cache empty) or Error{kSchema} (context size).
  void recompute(std::span<const float> context);

  // Appends the pending frames of the chunk's last denoise call to the cache
  // (event append, evicting beyond the window). Throws Error{kPlan} when no
  // denoise call ran since the last commit/recompute, Error{kKvLifecycle}
  // when the cache cannot take an append; a throw mutates nothing.
  void commit_chunk();

  // The cache, for the mesh loop's init / hard_cut / bias changes / digests.
  KvCache& cache() noexcept { return cache_; }
  const KvCache& cache() const noexcept { return cache_; }

  // Generator calls completed (denoise + recompute) since construction; the
  // runner reports per-chunk differences as observed_generator_calls.
  std::uint64_t generator_calls() const noexcept { return generator_calls_; }
  // weight_shard_fingerprint() of the weights this instance holds, computed
  // from them at each call (a handshake after a warm recovery checks the
  // weights as they are now, not as they were loaded).
  std::uint64_t weight_fingerprint() const noexcept;

  const ModelConfig& config() const noexcept { return config_; }
  int tp_rank() const noexcept { return tp_rank_; }
  int tp_size() const noexcept { return tp_size_; }

 private:
  void forward(std::span<float> x, int tokens, float timestep, bool use_cache, KvFrames& kv_out);
  void attention(int layer, std::span<float> x, int tokens, bool use_cache, KvFrames& kv_out);
  void attend_heads(int layer, int tokens, bool use_cache, std::span<const float> k, std::span<const float> v);
  void mlp(int layer, std::span<float> x, int tokens);
  void check_tokens(std::size_t floats, int tokens_per_unit, int units_max, const char* what) const;

  ModelConfig config_;
  int tp_rank_;
  int tp_size_;
  TensorParallelOps& ops_;
  std::unique_ptr<const detail::ModelShard> shard_;
  KvCache cache_;
  KvFrames pending_;
  bool has_pending_ = false;
  std::uint64_t generator_calls_ = 0;
  // Per-call working buffers, reused across calls.
  std::vector<float> h_, q_, keys_, values_, scores_, heads_out_, projected_, hidden_, norm_sums_;
};

}  // namespace lockstep
