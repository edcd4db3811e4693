#include "lockstep/phase.h"

#include <algorithm>
#include <string>

#include "lockstep/error.h"

namespace lockstep {
namespace {

std::size_t phase_index(Phase phase) {
  const auto index = static_cast<std::size_t>(phase);
  if (index >= kPhaseCount) {
    throw Error(ErrorCode::kInvalidArgument, "invalid phase value " + std::to_string(index));
  }
  return index;
}

}  // namespace

std::string_view phase_name(Phase phase) {
  switch (phase) {
    case Phase::kStartup: return "startup";
    case Phase::kControl: return "control";
    case Phase::kGenerator: return "generator";
    case Phase::kShutdown: return "shutdown";
  }
  return "invalid";
}

void PhasePolicy::allow(Phase phase, std::string_view group) {
  if (group.empty()) throw Error(ErrorCode::kInvalidArgument, "phase policy: empty group name");
  std::vector<std::string>& groups = allowed_[phase_index(phase)];
  if (std::find(groups.begin(), groups.end(), group) == groups.end()) groups.emplace_back(group);
}

bool PhasePolicy::allows(Phase phase, std::string_view group) const {
  const auto index = static_cast<std::size_t>(phase);
  if (index >= kPhaseCount) return false;
  const std::vector<std::string>& groups = allowed_[index];
  return std::find(groups.begin(), groups.end(), group) != groups.end();
}

const std::vector<std::string>& PhasePolicy::allowed(Phase phase) const {
  return allowed_[phase_index(phase)];
}

PhasePolicy make_standard_phase_policy() {
  PhasePolicy policy;
  for (Phase phase : {Phase::kStartup, Phase::kControl}) {
    policy.allow(phase, kGroupWorld);
    policy.allow(phase, kGroupBoundary);
    policy.allow(phase, kGroupMesh);
  }
  policy.allow(Phase::kGenerator, kGroupMesh);
  policy.allow(Phase::kShutdown, kGroupWorld);
  policy.allow(Phase::kShutdown, kGroupBoundary);
  return policy;
}

}  // namespace lockstep
