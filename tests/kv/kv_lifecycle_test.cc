#include "lockstep/kv_lifecycle.h"

#include <gtest/gtest.h>

#include <array>
#include <optional>
#include <string>

#include "lockstep/error.h"

namespace lockstep {
namespace {

constexpr std::array<KvState, kKvStateCount> kStates = {KvState::kEmpty, KvState::kFilling, KvState::kRolling};
constexpr std::array<KvEvent, kKvEventCount> kEvents = {KvEvent::kInit,      KvEvent::kAppend,
                                                        KvEvent::kEvict,     KvEvent::kRecompute,
                                                        KvEvent::kHardCut,   KvEvent::kAttentionBiasChange};

// SPEC §4F written out independently of the implementation's table:
// {legal, next when partial, next when full}.
struct Expected {
  bool legal;
  KvState partial;
  KvState full;
};
constexpr Expected X{false, KvState::kEmpty, KvState::kEmpty};
constexpr Expected E{true, KvState::kEmpty, KvState::kEmpty};
constexpr Expected F{true, KvState::kFilling, KvState::kFilling};
constexpr Expected R{true, KvState::kRolling, KvState::kRolling};
constexpr Expected FR{true, KvState::kFilling, KvState::kRolling};
constexpr std::array<std::array<Expected, kKvEventCount>, kKvStateCount> kExpected{{
    // init append evict recompute hard_cut bias
    {{F, X, X, X, E, X}},      // empty
    {{X, FR, X, FR, E, F}},    // filling
    {{X, R, R, FR, E, R}},     // rolling
}};

// Drives a fresh machine into `state` through legal events only.
KvLifecycle machine_in(KvState state) {
  KvLifecycle machine;
  if (state == KvState::kEmpty) return machine;
  machine.apply(KvEvent::kInit, false);
  if (state == KvState::kRolling) machine.apply(KvEvent::kAppend, true);
  EXPECT_EQ(machine.state(), state);
  return machine;
}

TEST(KvLifecycle, TableMatchesSpecForEveryStateAndEvent) {
  for (KvState state : kStates) {
    for (KvEvent event : kEvents) {
      const Expected& expected = kExpected[static_cast<std::size_t>(state)][static_cast<std::size_t>(event)];
      const KvTransition actual = kv_transition(state, event);
      SCOPED_TRACE(std::string(kv_state_name(state)) + " + " + std::string(kv_event_name(event)));
      ASSERT_EQ(actual.legal, expected.legal);
      if (!expected.legal) continue;
      EXPECT_EQ(actual.next_partial, expected.partial);
      EXPECT_EQ(actual.next_full, expected.full);
    }
  }
}

TEST(KvLifecycle, LegalTransitionsMoveToTheTablesState) {
  for (KvState state : kStates) {
    for (KvEvent event : kEvents) {
      const KvTransition transition = kv_transition(state, event);
      if (!transition.legal) continue;
      for (bool full : {false, true}) {
        if (full && state == KvState::kEmpty) continue;  // an empty cache is never full
        KvLifecycle machine = machine_in(state);
        EXPECT_EQ(machine.apply(event, full), full ? transition.next_full : transition.next_partial);
      }
    }
  }
}

TEST(KvLifecycle, IllegalTransitionsThrowNamingStateAndEventAndChangeNothing) {
  int illegal = 0;
  for (KvState state : kStates) {
    for (KvEvent event : kEvents) {
      if (kv_transition(state, event).legal) continue;
      ++illegal;
      KvLifecycle machine = machine_in(state);
      try {
        machine.apply(event, false);
        ADD_FAILURE() << "illegal transition accepted";
      } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kKvLifecycle);
        const std::string message = error.what();
        EXPECT_NE(message.find("'" + std::string(kv_state_name(state)) + "'"), std::string::npos) << message;
        EXPECT_NE(message.find("'" + std::string(kv_event_name(event)) + "'"), std::string::npos) << message;
      }
      EXPECT_THROW(machine.require(event), Error);
      EXPECT_EQ(machine.state(), state);
    }
  }
  EXPECT_EQ(illegal, 7);  // 4 from empty, init/evict in filling, init in rolling
}

TEST(KvLifecycle, NamesAreStable) {
  EXPECT_EQ(kv_state_name(KvState::kRolling), "rolling");
  EXPECT_EQ(kv_event_name(KvEvent::kAttentionBiasChange), "attention_bias_change");
  EXPECT_EQ(kv_event_name(KvEvent::kHardCut), "hard_cut");
}

}  // namespace
}  // namespace lockstep
