#include "lockstep/model_config.h"

#include <xxhash.h>

#include <array>
#include <string>
#include <vector>

#include "lockstep/error.h"

namespace lockstep {
namespace {

// The table of docs/reference-model.md.
const std::array<ModelConfig, 3>& configs() {
  static const std::array<ModelConfig, 3> table{{
      {"tiny", 64, 4, 2, 8, 2, 6},
      {"small", 256, 8, 4, 32, 3, 12},
      {"dit14b-layer", 5120, 40, 1, 720, 3, 12},
  }};
  return table;
}

constexpr std::array<std::string_view, 3> kNames{"tiny", "small", "dit14b-layer"};

}  // namespace

std::span<const std::string_view> model_config_names() noexcept { return kNames; }

ModelConfig model_config_from_name(std::string_view name) {
  for (const ModelConfig& config : configs()) {
    if (config.name == name) return config;
  }
  std::string valid;
  for (std::string_view known : kNames) valid += (valid.empty() ? "" : ", ") + std::string(known);
  throw Error(ErrorCode::kInvalidArgument, "unknown model '" + std::string(name) + "'; valid models: " + valid);
}

void check_tensor_parallel(const ModelConfig& config, int tp_rank, int tp_size) {
  if (tp_size < 1 || config.heads % tp_size != 0 || tp_rank < 0 || tp_rank >= tp_size) {
    throw Error(ErrorCode::kInvalidArgument, "model '" + config.name + "': tp_rank " + std::to_string(tp_rank) +
                                                 " of tp_size " + std::to_string(tp_size) + " (tp_size must divide " +
                                                 std::to_string(config.heads) + " heads)");
  }
}

std::uint64_t model_config_digest(const ModelConfig& config) noexcept {
  std::vector<unsigned char> bytes(config.name.begin(), config.name.end());
  bytes.push_back(0);
  for (int field : {config.dim, config.heads, config.layers, config.tokens_per_frame, config.frames_per_chunk,
                    config.window_frames}) {
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<unsigned char>(static_cast<std::uint32_t>(field) >> (8 * i)));
  }
  return XXH3_64bits(bytes.data(), bytes.size());
}

}  // namespace lockstep
