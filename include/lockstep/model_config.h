// The named configurations of the reference model (docs/reference-model.md,
// SPEC §5). The config digest is part of the start-up parity record (G1):
// two ranks running different model shapes must not meet in a collective.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace lockstep {

struct ModelConfig {
  std::string name;
  int dim = 0;               // D
  int heads = 0;             // H
  int layers = 0;            // L
  int tokens_per_frame = 0;
  int frames_per_chunk = 0;
  int window_frames = 0;     // KV window

  int head_dim() const noexcept { return dim / heads; }
  int mlp_hidden() const noexcept { return 4 * dim; }
  int tokens_per_chunk() const noexcept { return tokens_per_frame * frames_per_chunk; }
};

// "tiny", "small", "dit14b-layer", in table order. Non-blocking, pure.
std::span<const std::string_view> model_config_names() noexcept;

// The named configuration. Throws Error{kInvalidArgument} for an unknown
// name, listing the valid ones.
ModelConfig model_config_from_name(std::string_view name);

// Throws Error{kInvalidArgument} unless tp_size >= 1 divides the head count
// and 0 <= tp_rank < tp_size (message names the model and the sizes).
void check_tensor_parallel(const ModelConfig& config, int tp_rank, int tp_size);

// XXH3-64 of the canonical encoding: the name's bytes, a 0 byte, then dim,
// heads, layers, tokens_per_frame, frames_per_chunk, window_frames as
// little-endian u32. Pure.
std::uint64_t model_config_digest(const ModelConfig& config) noexcept;

}  // namespace lockstep
