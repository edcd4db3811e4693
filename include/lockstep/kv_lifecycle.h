// The KV-cache lifecycle of SPEC §4F as an explicit state machine. The
// transition table is data (kv_transition), so tests can walk it
// exhaustively and the cache can validate a whole mutation against a copy of
// the machine before touching a byte (F3: illegal transitions fail before any
// collective and before any state changes).
//
//   state \ event   init     append        evict    recompute     hard_cut  bias_change
//   empty           filling  ✗             ✗        ✗             empty     ✗
//   filling         ✗        filling|roll  ✗        filling|roll  empty     filling
//   rolling         ✗        rolling       rolling  filling|roll  empty     rolling
// "filling|roll": filling while the cache holds fewer than window frames
// after the event, rolling once it holds exactly window frames. Eviction
// only happens in rolling: an append that overflows the ring reaches rolling
// first. init needs an empty cache: re-initialising a live one without a hard
// cut is the classic silent-corruption bug this table exists to stop.
//
// Threads: not thread-safe; owned by the mesh loop. Nothing blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace lockstep {

enum class KvState : std::uint8_t { kEmpty, kFilling, kRolling };
enum class KvEvent : std::uint8_t { kInit, kAppend, kEvict, kRecompute, kHardCut, kAttentionBiasChange };

inline constexpr std::size_t kKvStateCount = 3;
inline constexpr std::size_t kKvEventCount = 6;

// Stable names used in errors, dumps and docs ("empty", "attention_bias_change", ...).
std::string_view kv_state_name(KvState state) noexcept;
std::string_view kv_event_name(KvEvent event) noexcept;

struct KvTransition {
  bool legal = false;
  KvState next_partial = KvState::kEmpty;  // next state when the cache is not full after the event
  KvState next_full = KvState::kEmpty;     // next state when it holds window frames
};

// The table above. Pure, non-blocking.
KvTransition kv_transition(KvState state, KvEvent event) noexcept;

class KvLifecycle {
 public:
  KvState state() const noexcept { return state_; }

  // Throws Error{kKvLifecycle} naming the state and the event when the table
  // forbids the event in the current state. Mutates nothing.
  void require(KvEvent event) const;

  // require(event), then moves to the table's next state; `full` says whether
  // the cache holds window frames after the event. Returns the new state. A
  // throw leaves the state unchanged.
  KvState apply(KvEvent event, bool full);

 private:
  KvState state_ = KvState::kEmpty;
};

}  // namespace lockstep
