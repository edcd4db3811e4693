#include "lockstep/collective_observer.h"

namespace lockstep {

std::string_view collective_state_name(CollectiveState state) {
  switch (state) {
    case CollectiveState::kRejected: return "rejected";
    case CollectiveState::kEnqueued: return "enqueued";
    case CollectiveState::kStarted: return "started";
    case CollectiveState::kCompleted: return "completed";
    case CollectiveState::kFailed: return "failed";
  }
  return "invalid";
}

}  // namespace lockstep
