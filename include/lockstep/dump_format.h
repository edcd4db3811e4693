// The vocabulary of the flight-recorder dump (docs/ARCHITECTURE.md, format
// version 1): event kinds and states, and their names on disk. One table,
// shared by the writer (guard) and the reader (doctor, trace), so the two can
// never disagree on a name.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <utility>

namespace lockstep {

enum class EventKind : std::uint8_t { kCollective = 1, kP2p, kCommit, kWait, kStage, kNote };
enum class EventState : std::uint8_t { kEnqueued = 1, kStarted, kCompleted, kFailed };

inline constexpr std::array<std::pair<std::string_view, EventKind>, 6> kEventKindNames{{
    {"collective", EventKind::kCollective}, {"p2p", EventKind::kP2p}, {"commit", EventKind::kCommit},
    {"wait", EventKind::kWait}, {"stage", EventKind::kStage}, {"note", EventKind::kNote}}};
inline constexpr std::array<std::pair<std::string_view, EventState>, 4> kEventStateNames{{
    {"enqueued", EventState::kEnqueued}, {"started", EventState::kStarted},
    {"completed", EventState::kCompleted}, {"failed", EventState::kFailed}}};

// The on-disk name ("collective", "started", ...). Pure.
constexpr std::string_view event_kind_name(EventKind kind) {
  for (const auto& [name, value] : kEventKindNames) {
    if (value == kind) return name;
  }
  return "unknown";
}
constexpr std::string_view event_state_name(EventState state) {
  for (const auto& [name, value] : kEventStateNames) {
    if (value == state) return name;
  }
  return "unknown";
}

}  // namespace lockstep
