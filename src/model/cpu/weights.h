// Shard-only weight generation of docs/reference-model.md ("Weights",
// "Sharding"): every element is a pure function of (seed, tensor_id, row,
// col), so a rank materialises only its slice.
#pragma once

#include <cstdint>
#include <vector>

#include "lockstep/model_config.h"
#include "lockstep/reference_model.h"

namespace lockstep::detail {

struct LayerShard {
  std::vector<float> wq, wk, wv;     // [D × D/P]: columns of the local heads
  std::vector<float> wo;             // [D/P × D]: rows of the local heads
  std::vector<float> w1;             // [D × 4D/P]: columns r·4D/P …
  std::vector<float> w2;             // [4D/P × D]: the same rows
  std::vector<float> g_attn, g_mlp;  // [D]
  std::vector<float> g_q, g_k;       // [D/P]: the local heads' slice
};

struct ModelShard {
  std::vector<LayerShard> layers;
  std::vector<float> t_embed;  // [D]
};

// Throws as check_tensor_parallel.
ModelShard generate_shard(const ModelConfig& config, std::uint64_t seed, int tp_rank, int tp_size);

// The fingerprint of weight_shard_fingerprint() over an already generated shard.
std::uint64_t fingerprint_shard(const ModelShard& shard, WeightStorage storage) noexcept;

// fp32 → bf16 bits, round to nearest even (as CUDA's __float2bfloat16 for
// finite values, which generated weights always are).
std::uint16_t bf16_bits(float value) noexcept;

}  // namespace lockstep::detail
