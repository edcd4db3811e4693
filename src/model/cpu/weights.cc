#include "weights.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>

#include "lockstep/assert.h"
#include "lockstep/reference_model.h"

namespace lockstep {
namespace {

constexpr int kTensorsPerLayer = 16;  // tensor_id = layer · 16 + k
constexpr double kTwoPowMinus53 = 1.0 / 9007199254740992.0;

bool is_gain(WeightTensor tensor) {
  return tensor == WeightTensor::kGainAttn || tensor == WeightTensor::kGainMlp || tensor == WeightTensor::kGainQ ||
         tensor == WeightTensor::kGainK;
}

// fan_in of the doc: the input width of a matrix; 1 for t_embed.
double fan_in(const ModelConfig& config, WeightTensor tensor) {
  if (tensor == WeightTensor::kW2) return config.mlp_hidden();
  if (tensor == WeightTensor::kTimeEmbed) return 1.0;
  return config.dim;
}

// Rows [row0, row0 + rows) × columns [col0, col0 + cols) of one tensor, row-major.
std::vector<float> slice(const ModelConfig& config, std::uint64_t seed, int layer, WeightTensor tensor, int row0,
                         int rows, int col0, int cols) {
  std::vector<float> out(static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols));
  std::size_t i = 0;
  for (int row = row0; row < row0 + rows; ++row) {
    for (int col = col0; col < col0 + cols; ++col) {
      out[i++] = reference_weight(config, seed, layer, tensor, static_cast<std::uint64_t>(row),
                                  static_cast<std::uint64_t>(col));
    }
  }
  return out;
}

}  // namespace

std::uint64_t splitmix64(std::uint64_t z) noexcept {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double signed_unit(std::uint64_t hash) noexcept {
  return 2.0 * (static_cast<double>(hash >> 11) * kTwoPowMinus53) - 1.0;
}

float reference_weight(const ModelConfig& config, std::uint64_t seed, int layer, WeightTensor tensor,
                       std::uint64_t row, std::uint64_t col) noexcept {
  const auto tensor_id = static_cast<std::uint64_t>(layer * kTensorsPerLayer + static_cast<int>(tensor));
  const double centered = signed_unit(splitmix64(seed ^ (tensor_id << 56) ^ (row << 28) ^ col));
  if (is_gain(tensor)) return static_cast<float>(1.0 + 0.1 * centered);
  return static_cast<float>(centered / std::sqrt(fan_in(config, tensor)));
}

namespace detail {

ModelShard generate_shard(const ModelConfig& config, std::uint64_t seed, int tp_rank, int tp_size) {
  check_tensor_parallel(config, tp_rank, tp_size);
  const int dim = config.dim;
  const int local_dim = dim / tp_size;
  const int local_hidden = config.mlp_hidden() / tp_size;
  const int col0 = tp_rank * local_dim;
  const int hidden0 = tp_rank * local_hidden;
  ModelShard shard;
  for (int layer = 0; layer < config.layers; ++layer) {
    const auto gen = [&](WeightTensor tensor, int row0, int rows, int c0, int cols) {
      return slice(config, seed, layer, tensor, row0, rows, c0, cols);
    };
    LayerShard s;
    s.wq = gen(WeightTensor::kWq, 0, dim, col0, local_dim);
    s.wk = gen(WeightTensor::kWk, 0, dim, col0, local_dim);
    s.wv = gen(WeightTensor::kWv, 0, dim, col0, local_dim);
    s.wo = gen(WeightTensor::kWo, col0, local_dim, 0, dim);
    s.w1 = gen(WeightTensor::kW1, 0, dim, hidden0, local_hidden);
    s.w2 = gen(WeightTensor::kW2, hidden0, local_hidden, 0, dim);
    s.g_attn = gen(WeightTensor::kGainAttn, 0, 1, 0, dim);
    s.g_mlp = gen(WeightTensor::kGainMlp, 0, 1, 0, dim);
    s.g_q = gen(WeightTensor::kGainQ, 0, 1, col0, local_dim);
    s.g_k = gen(WeightTensor::kGainK, 0, 1, col0, local_dim);
    shard.layers.push_back(std::move(s));
  }
  shard.t_embed = slice(config, seed, 0, WeightTensor::kTimeEmbed, 0, 1, 0, dim);
  return shard;
}

std::uint16_t bf16_bits(float value) noexcept {
  const auto bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

std::uint64_t fingerprint_shard(const ModelShard& shard, WeightStorage storage) noexcept {
  XXH3_state_t* state = XXH3_createState();
  LOCKSTEP_ASSERT(state != nullptr);
  XXH3_64bits_reset(state);
  const auto add = [state](const std::vector<float>& tensor) {
    XXH3_64bits_update(state, tensor.data(), tensor.size() * sizeof(float));
  };
  // Rounded a block at a time: a fixed buffer, nothing allocated (noexcept).
  std::array<std::uint16_t, 4096> rounded{};
  const auto add_matrix = [&](const std::vector<float>& tensor) {
    if (storage == WeightStorage::kF32) return add(tensor);
    for (std::size_t first = 0; first < tensor.size(); first += rounded.size()) {
      const std::size_t n = std::min(rounded.size(), tensor.size() - first);
      for (std::size_t i = 0; i < n; ++i) rounded[i] = bf16_bits(tensor[first + i]);
      XXH3_64bits_update(state, rounded.data(), n * sizeof(std::uint16_t));
    }
  };
  for (std::size_t layer = 0; layer < shard.layers.size(); ++layer) {
    const LayerShard& s = shard.layers[layer];
    for (const auto* matrix : {&s.wq, &s.wk, &s.wv, &s.wo, &s.w1, &s.w2}) add_matrix(*matrix);
    for (const auto* vector : {&s.g_attn, &s.g_mlp, &s.g_q, &s.g_k}) add(*vector);
    if (layer == 0) add(shard.t_embed);  // tensor_id 10 sorts after layer 0's gains
  }
  const std::uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

}  // namespace detail

std::uint64_t weight_shard_fingerprint(const ModelConfig& config, std::uint64_t seed, int tp_rank, int tp_size,
                                       WeightStorage storage) {
  return detail::fingerprint_shard(detail::generate_shard(config, seed, tp_rank, tp_size), storage);
}

}  // namespace lockstep
