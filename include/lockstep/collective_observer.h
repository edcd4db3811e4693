// The hook through which guard's flight recorder and watchdog see every call
// of the guarded Communicator, without comm depending on guard (SPEC §3).
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "lockstep/dtype.h"
#include "lockstep/error.h"
#include "lockstep/ledger.h"
#include "lockstep/phase.h"

namespace lockstep {

// kRejected: a check failed before the ledger or the backend saw the call
//            (membership, phase, root/peer, arguments, aborted).
// kEnqueued: checks passed, appended to the ledger (group_seq assigned).
// kStarted : handed to the backend; a watchdog arms `timeout` here.
// kCompleted / kFailed: the backend returned / threw.
enum class CollectiveState : std::uint8_t {
  kRejected = 1,
  kEnqueued = 2,
  kStarted = 3,
  kCompleted = 4,
  kFailed = 5,
};
// "rejected", "enqueued", "started", "completed", "failed" (dump format).
std::string_view collective_state_name(CollectiveState state);

struct CollectiveEvent {
  std::string_view group;  // valid only during on_collective()
  int global_rank = -1;    // this process
  // Ledger seq for enqueued..failed; for kRejected the seq the call would
  // have taken (or 0 when the group is unknown).
  std::uint64_t group_seq = 0;
  CollectiveOp op = CollectiveOp::kBarrier;
  DType dtype = DType::kU8;
  std::uint64_t count = 0;
  int root_or_peer = kNoRootOrPeer;  // group rank
  Phase phase = Phase::kStartup;
  CollectiveState state = CollectiveState::kEnqueued;
  std::chrono::milliseconds timeout{0};
  // Set for kRejected and kFailed only.
  ErrorCode error_code = ErrorCode::kInternal;
  std::string_view error_message;  // valid only during on_collective()
};

class CollectiveObserver {
 public:
  virtual ~CollectiveObserver() = default;
  // Called synchronously on the thread that issues the call (the comm
  // thread), before and after the backend call. Must be fast (it sits on the
  // collective path) and must not call back into the Communicator.
  virtual void on_collective(const CollectiveEvent& event) noexcept = 0;
};

}  // namespace lockstep
