#include "lockstep/kv_cache.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <string>

#include "lockstep/assert.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

void check_range(const char* field, long long value, long long max) {
  if (value < 1 || value > max) {
    throw Error(ErrorCode::kInvalidArgument, std::string("kv cache: geometry.") + field + " = " +
                                                 std::to_string(value) + " outside [1, " + std::to_string(max) + "]");
  }
}

void put_u64(std::array<unsigned char, 8 * 9>& bytes, std::size_t field, std::uint64_t value) {
  for (std::size_t i = 0; i < 8; ++i) bytes[field * 8 + i] = static_cast<unsigned char>(value >> (8 * i));
}

}  // namespace

std::size_t KvGeometry::frame_floats() const noexcept {
  return static_cast<std::size_t>(tokens_per_frame) * static_cast<std::size_t>(local_dim());
}

KvCache::KvCache(const KvGeometry& geometry) : geometry_(geometry) {
  check_range("layers", geometry.layers, kKvLayersMax);
  check_range("window_frames", geometry.window_frames, kKvWindowFramesMax);
  check_range("local_heads", geometry.local_heads, static_cast<long long>(kKvFrameFloatsMax));
  check_range("head_dim", geometry.head_dim, static_cast<long long>(kKvFrameFloatsMax));
  check_range("tokens_per_frame", geometry.tokens_per_frame, static_cast<long long>(kKvFrameFloatsMax));
  check_range("frame_floats", static_cast<long long>(geometry.frame_floats()), static_cast<long long>(kKvFrameFloatsMax));
  const std::size_t ring_floats = geometry.frame_floats() * static_cast<std::size_t>(geometry.window_frames);
  k_.assign(static_cast<std::size_t>(geometry.layers), std::vector<float>(ring_floats));
  v_.assign(static_cast<std::size_t>(geometry.layers), std::vector<float>(ring_floats));
}

void KvCache::init(std::uint64_t cache_epoch, std::int64_t start_frame, float attention_bias) {
  if (start_frame < 0 || !std::isfinite(attention_bias)) {
    throw Error(ErrorCode::kInvalidArgument, "kv cache: init(start_frame " + std::to_string(start_frame) +
                                                 ", attention_bias " + std::to_string(attention_bias) + ")");
  }
  lifecycle_.apply(KvEvent::kInit, false);
  cache_epoch_ = cache_epoch;
  global_end_frame_ = start_frame;
  local_end_slot_ = 0;
  frames_held_ = 0;
  attention_bias_ = attention_bias;
}

void KvCache::check_frames(const KvFrames& frames, const char* what) const {
  const std::size_t layers = static_cast<std::size_t>(geometry_.layers);
  if (frames.frames < 1 || frames.frames > geometry_.window_frames) {
    throw Error(ErrorCode::kSchema, std::string("kv cache: ") + what + " of " + std::to_string(frames.frames) +
                                        " frames; must be in [1, window_frames = " +
                                        std::to_string(geometry_.window_frames) + "]");
  }
  const std::size_t floats = geometry_.frame_floats() * static_cast<std::size_t>(frames.frames);
  bool sizes_ok = frames.k.size() == layers && frames.v.size() == layers;
  for (std::size_t layer = 0; sizes_ok && layer < layers; ++layer) {
    sizes_ok = frames.k[layer].size() == floats && frames.v[layer].size() == floats;
  }
  if (!sizes_ok) {
    throw Error(ErrorCode::kSchema, std::string("kv cache: ") + what + " tensors are not " +
                                        std::to_string(layers) + " layers of " + std::to_string(floats) +
                                        " floats for k and v");
  }
}

void KvCache::write_frames(const KvFrames& frames, int first_slot) {
  const std::size_t frame_floats = geometry_.frame_floats();
  for (std::size_t layer = 0; layer < k_.size(); ++layer) {
    for (int frame = 0; frame < frames.frames; ++frame) {
      const std::size_t slot = static_cast<std::size_t>((first_slot + frame) % geometry_.window_frames);
      const auto source = static_cast<std::ptrdiff_t>(static_cast<std::size_t>(frame) * frame_floats);
      const auto count = static_cast<std::ptrdiff_t>(frame_floats);
      std::copy_n(frames.k[layer].begin() + source, count, k_[layer].begin() + static_cast<std::ptrdiff_t>(slot * frame_floats));
      std::copy_n(frames.v[layer].begin() + source, count, v_[layer].begin() + static_cast<std::ptrdiff_t>(slot * frame_floats));
    }
  }
}

void KvCache::append(const KvFrames& chunk) {
  lifecycle_.require(KvEvent::kAppend);
  check_frames(chunk, "append");
  const int total = frames_held_ + chunk.frames;
  const int window = geometry_.window_frames;
  // Validate the whole transition on a copy before mutating (F3).
  KvLifecycle next = lifecycle_;
  next.apply(KvEvent::kAppend, total >= window);
  if (total > window) next.apply(KvEvent::kEvict, true);
  write_frames(chunk, local_end_slot_);
  lifecycle_ = next;
  local_end_slot_ = (local_end_slot_ + chunk.frames) % window;
  frames_held_ = std::min(total, window);
  global_end_frame_ += chunk.frames;
}

void KvCache::replace_all(const KvFrames& context) {
  lifecycle_.require(KvEvent::kRecompute);
  check_frames(context, "recompute context");
  lifecycle_.apply(KvEvent::kRecompute, context.frames == geometry_.window_frames);
  write_frames(context, 0);
  local_end_slot_ = context.frames % geometry_.window_frames;
  frames_held_ = context.frames;
  ++recompute_count_;
}

void KvCache::hard_cut() {
  lifecycle_.apply(KvEvent::kHardCut, false);
  local_end_slot_ = 0;
  frames_held_ = 0;
}

void KvCache::set_attention_bias(float attention_bias) {
  if (!std::isfinite(attention_bias)) {
    throw Error(ErrorCode::kInvalidArgument, "kv cache: attention_bias " + std::to_string(attention_bias));
  }
  lifecycle_.apply(KvEvent::kAttentionBiasChange, frames_held_ == geometry_.window_frames);
  attention_bias_ = attention_bias;
}

std::size_t KvCache::slot_offset(int layer, int frame) const {
  if (layer < 0 || layer >= geometry_.layers || frame < 0 || frame >= frames_held_) {
    throw Error(ErrorCode::kInvalidArgument, "kv cache: layer " + std::to_string(layer) + " frame " +
                                                 std::to_string(frame) + " not held (" +
                                                 std::to_string(frames_held_) + " frames)");
  }
  const int window = geometry_.window_frames;
  const int oldest_slot = (local_end_slot_ - frames_held_ + window) % window;
  return static_cast<std::size_t>((oldest_slot + frame) % window) * geometry_.frame_floats();
}

std::span<const float> KvCache::keys(int layer, int frame) const {
  const std::size_t offset = slot_offset(layer, frame);
  return std::span<const float>(k_[static_cast<std::size_t>(layer)]).subspan(offset, geometry_.frame_floats());
}

std::span<const float> KvCache::values(int layer, int frame) const {
  const std::size_t offset = slot_offset(layer, frame);
  return std::span<const float>(v_[static_cast<std::size_t>(layer)]).subspan(offset, geometry_.frame_floats());
}

KvStateRecord KvCache::state_record() const noexcept {
  KvStateRecord record;
  record.cache_epoch = cache_epoch_;
  record.start_frame = global_end_frame_ - frames_held_;
  record.global_end_frame = global_end_frame_;
  record.local_end_slot = local_end_slot_;
  record.frames_held = frames_held_;
  record.recompute_count = recompute_count_;
  record.state = lifecycle_.state();
  record.attention_bias = attention_bias_;
  record.window_frames = geometry_.window_frames;
  return record;
}

std::uint64_t KvCache::state_digest() const noexcept {
  const KvStateRecord record = state_record();
  std::array<unsigned char, 8 * 9> bytes{};
  put_u64(bytes, 0, record.cache_epoch);
  put_u64(bytes, 1, static_cast<std::uint64_t>(record.start_frame));
  put_u64(bytes, 2, static_cast<std::uint64_t>(record.global_end_frame));
  put_u64(bytes, 3, static_cast<std::uint64_t>(record.local_end_slot));
  put_u64(bytes, 4, static_cast<std::uint64_t>(record.frames_held));
  put_u64(bytes, 5, record.recompute_count);
  put_u64(bytes, 6, static_cast<std::uint64_t>(record.state));
  put_u64(bytes, 7, std::bit_cast<std::uint32_t>(record.attention_bias));
  put_u64(bytes, 8, static_cast<std::uint64_t>(record.window_frames));
  return XXH3_64bits(bytes.data(), bytes.size());
}

std::uint64_t KvCache::content_checksum() const {
  XXH3_state_t* state = XXH3_createState();
  LOCKSTEP_ASSERT(state != nullptr);
  XXH3_64bits_reset(state);
  const std::size_t frame_bytes = geometry_.frame_floats() * sizeof(float);
  for (int layer = 0; layer < geometry_.layers; ++layer) {
    for (int frame = 0; frame < frames_held_; ++frame) {
      XXH3_64bits_update(state, keys(layer, frame).data(), frame_bytes);
      XXH3_64bits_update(state, values(layer, frame).data(), frame_bytes);
    }
  }
  const std::uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

}  // namespace lockstep
