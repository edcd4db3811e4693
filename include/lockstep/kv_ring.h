// The replicated bookkeeping of a ring-buffer KV cache (SPEC §4F): the
// lifecycle state, the epoch, which stream frames the ring holds and where
// the next one goes, the recompute count and the attention bias. It holds no
// keys or values, so a cache whose tensors live elsewhere (the CPU KvCache,
// the CUDA model's device ring) keeps the same record and the same digest.
//
// Every event is validated in full (lifecycle and sizes) before anything
// changes (F3); a throw mutates nothing.
//
// The state digest (F2) covers this record only, never tensor contents,
// which legitimately differ across TP shards; the mesh compares it every
// chunk, so an out-of-band mutation on one rank trips within one chunk.
//
// Threads: not thread-safe; owned by the mesh loop. Nothing blocks.
#pragma once

#include <cstdint>

#include "lockstep/kv_lifecycle.h"

namespace lockstep {

inline constexpr int kKvWindowFramesMax = 256;

// What the state digest covers.
struct KvStateRecord {
  std::uint64_t cache_epoch = 0;
  std::int64_t start_frame = 0;       // stream index of the oldest frame held
  std::int64_t global_end_frame = 0;  // stream index one past the newest frame
  std::int64_t local_end_slot = 0;    // ring slot the next frame goes to
  std::int64_t frames_held = 0;
  std::uint64_t recompute_count = 0;  // recompute events over the ring's life
  KvState state = KvState::kEmpty;
  float attention_bias = 0;
  std::int64_t window_frames = 0;
};

class KvRing {
 public:
  // Throws Error{kInvalidArgument} unless 1 <= window_frames <= kKvWindowFramesMax.
  explicit KvRing(int window_frames);

  // Event init: starts epoch `cache_epoch` with no frames; the first frame
  // appended gets stream index `start_frame`. Throws Error{kKvLifecycle}
  // unless empty, Error{kInvalidArgument} for start_frame < 0 or a
  // non-finite bias.
  void init(std::uint64_t cache_epoch, std::int64_t start_frame, float attention_bias);

  // Event append (then evict when the ring overflows) of `frames` frames.
  // Returns the ring slot of the first one (the rest follow, wrapping).
  // Throws Error{kKvLifecycle} (e.g. empty) or Error{kSchema} (frames outside
  // [1, window]).
  int append(int frames);

  // Event recompute: the ring now holds `frames` frames ending at the current
  // global end, from slot 0. Same errors as append.
  void replace_all(int frames);

  // Event hard_cut: drops every frame; legal in every state.
  void hard_cut();

  // Event attention_bias_change. Throws Error{kKvLifecycle} when empty,
  // Error{kInvalidArgument} for a non-finite bias.
  void set_attention_bias(float attention_bias);

  // Throws Error{kKvLifecycle} when `event` is illegal now (to check before a
  // generator call's first collective). Mutates nothing.
  void require(KvEvent event) const { lifecycle_.require(event); }

  // Slot of the `frame`-th oldest frame held; Error{kInvalidArgument} unless
  // 0 <= frame < frames_held().
  int slot_of(int frame) const;

  int window_frames() const noexcept { return window_frames_; }
  int frames_held() const noexcept { return frames_held_; }
  float attention_bias() const noexcept { return attention_bias_; }
  KvState state() const noexcept { return lifecycle_.state(); }

  KvStateRecord state_record() const noexcept;
  // XXH3-64 of the canonical little-endian encoding of state_record(), field
  // by field in declaration order (floats by their bits). Equal on every TP
  // shard of a healthy mesh, whatever holds the tensors.
  std::uint64_t state_digest() const noexcept;

 private:
  void check_frames(int frames, const char* what) const;

  int window_frames_;
  KvLifecycle lifecycle_;
  std::uint64_t cache_epoch_ = 0;
  std::int64_t global_end_frame_ = 0;
  int local_end_slot_ = 0;
  int frames_held_ = 0;
  std::uint64_t recompute_count_ = 0;
  float attention_bias_ = 0;
};

}  // namespace lockstep
