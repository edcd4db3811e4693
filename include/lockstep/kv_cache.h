// The ring-buffer KV cache of the reference model (SPEC §4F, §5), one per
// mesh rank: per layer, the keys and values of this rank's heads (heads are
// sharded across TP ranks) for the last `window_frames` frames. Every
// mutation goes through the KvLifecycle state machine and is validated in
// full — lifecycle and geometry — before anything changes (F3).
//
// The state digest (F2) covers the replicated bookkeeping only — epoch,
// frame indices, ring position, recompute count, lifecycle state, attention
// bias — never the float contents, which legitimately differ across TP
// shards; the mesh compares it every chunk, so an out-of-band mutation on one
// rank trips within one chunk. content_checksum() hashes the contents for
// single-rank tests.
//
// Threads: not thread-safe; owned by the mesh loop (the thread running the
// model). Nothing blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "lockstep/kv_lifecycle.h"

namespace lockstep {

inline constexpr int kKvLayersMax = 64;
inline constexpr int kKvWindowFramesMax = 256;
// Floats of one frame of one layer's keys (tokens/frame × local heads × head_dim);
// dit14b-layer needs 720 × 40 × 128.
inline constexpr std::size_t kKvFrameFloatsMax = std::size_t{1} << 23;

struct KvGeometry {
  int layers = 0;
  int local_heads = 0;  // heads held by this rank
  int head_dim = 0;
  int tokens_per_frame = 0;
  int window_frames = 0;

  int local_dim() const noexcept { return local_heads * head_dim; }
  std::size_t frame_floats() const noexcept;  // tokens_per_frame × local_dim()
};

// k and v of `frames` consecutive frames for every layer, oldest first:
// k[layer] and v[layer] are row-major [frames · tokens_per_frame × local_dim].
struct KvFrames {
  int frames = 0;
  std::vector<std::vector<float>> k;
  std::vector<std::vector<float>> v;
};

// The replicated bookkeeping that the state digest covers.
struct KvStateRecord {
  std::uint64_t cache_epoch = 0;
  std::int64_t start_frame = 0;       // stream index of the oldest frame held
  std::int64_t global_end_frame = 0;  // stream index one past the newest frame
  std::int64_t local_end_slot = 0;    // ring slot the next frame goes to
  std::int64_t frames_held = 0;
  std::uint64_t recompute_count = 0;  // replace_all() calls over the cache's life
  KvState state = KvState::kEmpty;
  float attention_bias = 0;
  std::int64_t window_frames = 0;
};

class KvCache {
 public:
  // Throws Error{kInvalidArgument} for a geometry out of its limits.
  explicit KvCache(const KvGeometry& geometry);
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // Event init: starts epoch `cache_epoch` with no frames; the first frame
  // appended gets stream index `start_frame`. Throws Error{kKvLifecycle}
  // unless empty, Error{kInvalidArgument} for start_frame < 0.
  void init(std::uint64_t cache_epoch, std::int64_t start_frame, float attention_bias);

  // Event append (then evict when the ring overflows): adds the chunk's
  // frames, evicting the oldest beyond the window. Throws Error{kKvLifecycle}
  // (e.g. empty cache) or Error{kSchema} (frames outside [1, window] or
  // tensors of the wrong size) before mutating anything.
  void append(const KvFrames& chunk);

  // Event recompute: replaces every frame with `context` (frames in
  // [1, window]), which ends at the current global end. Same errors as append.
  void replace_all(const KvFrames& context);

  // Event hard_cut: drops every frame; legal in every state.
  void hard_cut();

  // Event attention_bias_change. Throws Error{kKvLifecycle} when empty,
  // Error{kInvalidArgument} for a non-finite bias.
  void set_attention_bias(float attention_bias);

  // Throws Error{kKvLifecycle} when `event` is illegal now (to check before a
  // generator call's first collective). Mutates nothing.
  void require(KvEvent event) const { lifecycle_.require(event); }

  // Keys / values of the `frame`-th oldest frame held (0 <= frame <
  // frames_held(), else Error{kInvalidArgument}) of `layer`: row-major
  // [tokens_per_frame × local_dim]. Valid until the next mutation.
  std::span<const float> keys(int layer, int frame) const;
  std::span<const float> values(int layer, int frame) const;

  int frames_held() const noexcept { return frames_held_; }
  float attention_bias() const noexcept { return attention_bias_; }
  KvState state() const noexcept { return lifecycle_.state(); }
  const KvGeometry& geometry() const noexcept { return geometry_; }

  KvStateRecord state_record() const noexcept;
  // XXH3-64 of the canonical little-endian encoding of state_record(), field
  // by field in declaration order (floats by their bits). Equal on every TP
  // shard of a healthy mesh.
  std::uint64_t state_digest() const noexcept;
  // XXH3-64 over every held float, per layer, oldest frame first, k then v.
  // Independent of the ring position; differs across TP shards.
  std::uint64_t content_checksum() const;

 private:
  void check_frames(const KvFrames& frames, const char* what) const;
  void write_frames(const KvFrames& frames, int first_slot);
  std::size_t slot_offset(int layer, int frame) const;

  KvGeometry geometry_;
  KvLifecycle lifecycle_;
  std::vector<std::vector<float>> k_;  // per layer: window_frames slots of frame_floats
  std::vector<std::vector<float>> v_;
  std::uint64_t cache_epoch_ = 0;
  std::int64_t global_end_frame_ = 0;
  int local_end_slot_ = 0;
  int frames_held_ = 0;
  std::uint64_t recompute_count_ = 0;
  float attention_bias_ = 0;
};

}  // namespace lockstep
