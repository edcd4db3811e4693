// Phases of a rank's life and the groups each phase may use (SPEC §4B):
// "inside the generator phase only `mesh`". The Communicator checks the
// policy before every backend call (B2).
//
// PhasePolicy is a value: build it once, then read it from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/group_table.h"

namespace lockstep {

enum class Phase : std::uint8_t { kStartup = 0, kControl = 1, kGenerator = 2, kShutdown = 3 };
inline constexpr std::size_t kPhaseCount = 4;

// "startup", "control", "generator", "shutdown". Used in errors, logs, dumps.
std::string_view phase_name(Phase phase);

class PhasePolicy {
 public:
  // Allows nothing in any phase.
  PhasePolicy() = default;

  // Allows `group` in `phase` (idempotent). Throws Error{kInvalidArgument}
  // for an empty group name or an invalid phase value.
  void allow(Phase phase, std::string_view group);
  // Non-blocking, thread-safe on a const policy.
  bool allows(Phase phase, std::string_view group) const;
  // The groups allowed in `phase`, in the order they were allowed.
  const std::vector<std::string>& allowed(Phase phase) const;

 private:
  std::array<std::vector<std::string>, kPhaseCount> allowed_;
};

// The standard policy:
//  startup  : world, boundary, mesh (handshake, fingerprints)
//  control  : world, boundary, mesh (envelopes, results, digests)
//  generator: mesh only
//  shutdown : world, boundary (final barrier, SHUTDOWN delivery)
PhasePolicy make_standard_phase_policy();

}  // namespace lockstep
