#include "lockstep/kv_lifecycle.h"

#include <array>
#include <string>

#include "lockstep/error.h"

namespace lockstep {
namespace {

using S = KvState;
constexpr KvTransition kIllegal{};
constexpr KvTransition to(S next) { return KvTransition{true, next, next}; }
constexpr KvTransition by_fill() { return KvTransition{true, S::kFilling, S::kRolling}; }

// Rows: states; columns: events, in enum order (see kv_lifecycle.h).
constexpr std::array<std::array<KvTransition, kKvEventCount>, kKvStateCount> kTable{{
    //      init              append           evict             recompute   hard_cut          bias_change
    {{to(S::kFilling), kIllegal, kIllegal, kIllegal, to(S::kEmpty), kIllegal}},                  // empty
    {{kIllegal, by_fill(), kIllegal, by_fill(), to(S::kEmpty), to(S::kFilling)}},                // filling
    {{kIllegal, to(S::kRolling), to(S::kRolling), by_fill(), to(S::kEmpty), to(S::kRolling)}},  // rolling
}};

}  // namespace

std::string_view kv_state_name(KvState state) noexcept {
  switch (state) {
    case KvState::kEmpty: return "empty";
    case KvState::kFilling: return "filling";
    case KvState::kRolling: return "rolling";
  }
  return "unknown";
}

std::string_view kv_event_name(KvEvent event) noexcept {
  switch (event) {
    case KvEvent::kInit: return "init";
    case KvEvent::kAppend: return "append";
    case KvEvent::kEvict: return "evict";
    case KvEvent::kRecompute: return "recompute";
    case KvEvent::kHardCut: return "hard_cut";
    case KvEvent::kAttentionBiasChange: return "attention_bias_change";
  }
  return "unknown";
}

KvTransition kv_transition(KvState state, KvEvent event) noexcept {
  const auto row = static_cast<std::size_t>(state);
  const auto column = static_cast<std::size_t>(event);
  if (row >= kKvStateCount || column >= kKvEventCount) return kIllegal;
  return kTable[row][column];
}

void KvLifecycle::require(KvEvent event) const {
  if (!kv_transition(state_, event).legal) {
    throw Error(ErrorCode::kKvLifecycle, "kv cache: event '" + std::string(kv_event_name(event)) +
                                             "' is illegal in state '" + std::string(kv_state_name(state_)) + "'");
  }
}

KvState KvLifecycle::apply(KvEvent event, bool full) {
  require(event);
  const KvTransition transition = kv_transition(state_, event);
  state_ = full ? transition.next_full : transition.next_partial;
  return state_;
}

}  // namespace lockstep
