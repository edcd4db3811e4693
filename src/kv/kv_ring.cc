#include "lockstep/kv_ring.h"

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

void put_u64(std::array<unsigned char, 8 * 9>& bytes, std::size_t field, std::uint64_t value) {
  for (std::size_t i = 0; i < 8; ++i) bytes[field * 8 + i] = static_cast<unsigned char>(value >> (8 * i));
}

}  // namespace

KvRing::KvRing(int window_frames) : window_frames_(window_frames) {
  if (window_frames < 1 || window_frames > kKvWindowFramesMax) {
    throw Error(ErrorCode::kInvalidArgument, "kv cache: geometry.window_frames = " + std::to_string(window_frames) +
                                                 " outside [1, " + std::to_string(kKvWindowFramesMax) + "]");
  }
}

void KvRing::init(std::uint64_t cache_epoch, std::int64_t start_frame, float attention_bias) {
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

void KvRing::check_frames(int frames, const char* what) const {
  if (frames < 1 || frames > window_frames_) {
    throw Error(ErrorCode::kSchema, std::string("kv cache: ") + what + " of " + std::to_string(frames) +
                                        " frames; must be in [1, window_frames = " +
                                        std::to_string(window_frames_) + "]");
  }
}

int KvRing::append(int frames) {
  lifecycle_.require(KvEvent::kAppend);
  check_frames(frames, "append");
  const int total = frames_held_ + frames;
  // Validate the whole transition on a copy before mutating (F3).
  KvLifecycle next = lifecycle_;
  next.apply(KvEvent::kAppend, total >= window_frames_);
  if (total > window_frames_) next.apply(KvEvent::kEvict, true);
  const int first_slot = local_end_slot_;
  lifecycle_ = next;
  local_end_slot_ = (local_end_slot_ + frames) % window_frames_;
  frames_held_ = std::min(total, window_frames_);
  global_end_frame_ += frames;
  return first_slot;
}

void KvRing::replace_all(int frames) {
  lifecycle_.require(KvEvent::kRecompute);
  check_frames(frames, "recompute context");
  lifecycle_.apply(KvEvent::kRecompute, frames == window_frames_);
  local_end_slot_ = frames % window_frames_;
  frames_held_ = frames;
  ++recompute_count_;
}

void KvRing::hard_cut() {
  lifecycle_.apply(KvEvent::kHardCut, false);
  local_end_slot_ = 0;
  frames_held_ = 0;
}

void KvRing::set_attention_bias(float attention_bias) {
  if (!std::isfinite(attention_bias)) {
    throw Error(ErrorCode::kInvalidArgument, "kv cache: attention_bias " + std::to_string(attention_bias));
  }
  lifecycle_.apply(KvEvent::kAttentionBiasChange, frames_held_ == window_frames_);
  attention_bias_ = attention_bias;
}

int KvRing::slot_of(int frame) const {
  if (frame < 0 || frame >= frames_held_) {
    throw Error(ErrorCode::kInvalidArgument, "kv cache: frame " + std::to_string(frame) + " not held (" +
                                                 std::to_string(frames_held_) + " frames)");
  }
  const int oldest_slot = (local_end_slot_ - frames_held_ + window_frames_) % window_frames_;
  return (oldest_slot + frame) % window_frames_;
}

KvStateRecord KvRing::state_record() const noexcept {
  KvStateRecord record;
  record.cache_epoch = cache_epoch_;
  record.start_frame = global_end_frame_ - frames_held_;
  record.global_end_frame = global_end_frame_;
  record.local_end_slot = local_end_slot_;
  record.frames_held = frames_held_;
  record.recompute_count = recompute_count_;
  record.state = lifecycle_.state();
  record.attention_bias = attention_bias_;
  record.window_frames = window_frames_;
  return record;
}

std::uint64_t KvRing::state_digest() const noexcept {
  const KvStateRecord record = state_record();
  LOCKSTEP_ASSERT(record.frames_held >= 0 && record.frames_held <= record.window_frames);
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

}  // namespace lockstep
