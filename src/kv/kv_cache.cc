#include "lockstep/kv_cache.h"

#include <xxhash.h>

#include <algorithm>
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

}  // namespace

std::size_t KvGeometry::frame_floats() const noexcept {
  return static_cast<std::size_t>(tokens_per_frame) * static_cast<std::size_t>(local_dim());
}

KvCache::KvCache(const KvGeometry& geometry) : geometry_(geometry), ring_(geometry.window_frames) {
  check_range("layers", geometry.layers, kKvLayersMax);
  check_range("local_heads", geometry.local_heads, static_cast<long long>(kKvFrameFloatsMax));
  check_range("head_dim", geometry.head_dim, static_cast<long long>(kKvFrameFloatsMax));
  check_range("tokens_per_frame", geometry.tokens_per_frame, static_cast<long long>(kKvFrameFloatsMax));
  check_range("frame_floats", static_cast<long long>(geometry.frame_floats()), static_cast<long long>(kKvFrameFloatsMax));
  const std::size_t ring_floats = geometry.frame_floats() * static_cast<std::size_t>(geometry.window_frames);
  k_.assign(static_cast<std::size_t>(geometry.layers), std::vector<float>(ring_floats));
  v_.assign(static_cast<std::size_t>(geometry.layers), std::vector<float>(ring_floats));
}

// Sizes only: the frame count's range is KvRing's to check.
void KvCache::check_tensors(const KvFrames& frames, const char* what) const {
  const std::size_t layers = static_cast<std::size_t>(geometry_.layers);
  const std::size_t floats = geometry_.frame_floats() * static_cast<std::size_t>(std::max(frames.frames, 0));
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
  ring_.require(KvEvent::kAppend);
  check_tensors(chunk, "append");
  const int first_slot = ring_.append(chunk.frames);  // validates the rest before mutating
  write_frames(chunk, first_slot);
}

void KvCache::replace_all(const KvFrames& context) {
  ring_.require(KvEvent::kRecompute);
  check_tensors(context, "recompute context");
  ring_.replace_all(context.frames);
  write_frames(context, 0);
}

std::size_t KvCache::slot_offset(int layer, int frame) const {
  if (layer < 0 || layer >= geometry_.layers) {
    throw Error(ErrorCode::kInvalidArgument, "kv cache: layer " + std::to_string(layer) + " outside [0, " +
                                                 std::to_string(geometry_.layers) + ")");
  }
  return static_cast<std::size_t>(ring_.slot_of(frame)) * geometry_.frame_floats();
}

std::span<const float> KvCache::keys(int layer, int frame) const {
  const std::size_t offset = slot_offset(layer, frame);
  return std::span<const float>(k_[static_cast<std::size_t>(layer)]).subspan(offset, geometry_.frame_floats());
}

std::span<const float> KvCache::values(int layer, int frame) const {
  const std::size_t offset = slot_offset(layer, frame);
  return std::span<const float>(v_[static_cast<std::size_t>(layer)]).subspan(offset, geometry_.frame_floats());
}

std::uint64_t KvCache::content_checksum() const {
  XXH3_state_t* state = XXH3_createState();
  LOCKSTEP_ASSERT(state != nullptr);
  XXH3_64bits_reset(state);
  const std::size_t frame_bytes = geometry_.frame_floats() * sizeof(float);
  for (int layer = 0; layer < geometry_.layers; ++layer) {
    for (int frame = 0; frame < ring_.frames_held(); ++frame) {
      XXH3_64bits_update(state, keys(layer, frame).data(), frame_bytes);
      XXH3_64bits_update(state, values(layer, frame).data(), frame_bytes);
    }
  }
  const std::uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

}  // namespace lockstep
