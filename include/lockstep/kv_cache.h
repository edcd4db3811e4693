// The ring-buffer KV cache of the CPU reference model (SPEC §4F, §5), one per
// mesh rank: per layer, the keys and values of this rank's heads (heads are
// sharded across TP ranks) for the last `window_frames` frames. The
// replicated bookkeeping — lifecycle, epoch, ring position — is a KvRing
// (kv_ring.h); every mutation is validated in full, lifecycle and tensor
// sizes, before anything changes (F3). content_checksum() hashes the
// contents for single-rank tests.
//
// Threads: not thread-safe; owned by the mesh loop (the thread running the
// model). Nothing blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "lockstep/kv_ring.h"

namespace lockstep {

inline constexpr int kKvLayersMax = 64;
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

class KvCache {
 public:
  // Throws Error{kInvalidArgument} for a geometry out of its limits.
  explicit KvCache(const KvGeometry& geometry);
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  // The events of KvRing, on the bookkeeping and the tensors together.
  void init(std::uint64_t cache_epoch, std::int64_t start_frame, float attention_bias) {
    ring_.init(cache_epoch, start_frame, attention_bias);
  }
  // Event append (then evict when the ring overflows): adds the chunk's
  // frames. Throws as KvRing::append, or Error{kSchema} for tensors of the
  // wrong size, before mutating anything.
  void append(const KvFrames& chunk);
  // Event recompute: replaces every frame with `context`, which ends at the
  // current global end. Same errors as append.
  void replace_all(const KvFrames& context);
  void hard_cut() { ring_.hard_cut(); }
  void set_attention_bias(float attention_bias) { ring_.set_attention_bias(attention_bias); }
  void require(KvEvent event) const { ring_.require(event); }

  // Keys / values of the `frame`-th oldest frame held (0 <= frame <
  // frames_held(), else Error{kInvalidArgument}) of `layer`: row-major
  // [tokens_per_frame × local_dim]. Valid until the next mutation.
  std::span<const float> keys(int layer, int frame) const;
  std::span<const float> values(int layer, int frame) const;

  const KvRing& ring() const noexcept { return ring_; }
  int frames_held() const noexcept { return ring_.frames_held(); }
  float attention_bias() const noexcept { return ring_.attention_bias(); }
  KvState state() const noexcept { return ring_.state(); }
  const KvGeometry& geometry() const noexcept { return geometry_; }
  KvStateRecord state_record() const noexcept { return ring_.state_record(); }
  std::uint64_t state_digest() const noexcept { return ring_.state_digest(); }
  // XXH3-64 over every held float, per layer, oldest frame first, k then v.
  // Independent of the ring position; differs across TP shards.
  std::uint64_t content_checksum() const;

 private:
  void check_tensors(const KvFrames& frames, const char* what) const;
  void write_frames(const KvFrames& frames, int first_slot);
  std::size_t slot_offset(int layer, int frame) const;

  KvGeometry geometry_;
  KvRing ring_;
  std::vector<std::vector<float>> k_;  // per layer: window_frames slots of frame_floats
  std::vector<std::vector<float>> v_;
};

}  // namespace lockstep
