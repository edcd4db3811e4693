// The one error style of lockstep: a failure is a thrown lockstep::Error that
// carries an ErrorCode (what class of rule broke) and a message naming the
// field, rank, group or operation involved. No layer returns status values.
//
// A process that cannot continue ends through guard's fatal path with the exit
// code of its ErrorCode (exit_code_for), so the launcher and doctor can tell
// classes of failure apart without parsing text.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lockstep {

enum class ErrorCode : std::uint8_t {
  kInvalidArgument = 1,  // a caller broke a documented precondition
  kEncode,               // a value cannot be encoded (A1)
  kDecode,               // bytes on the wire are malformed or truncated
  kChecksum,             // header or body checksum mismatch (A5)
  kVersion,              // no common protocol version / unknown version (A4)
  kSchema,               // required/forbidden field, plan arithmetic, geometry (A3, F1)
  kLimit,                // a static limit would be exceeded
  kTimeout,              // a deadline expired (C4)
  kPeerFailure,          // a peer died, poisoned the job or sent ERROR (C1, B6)
  kMembership,           // rank not in the named group, bad root/peer (B1)
  kPhase,                // group not allowed in the current phase (B2)
  kParity,               // start-up parity record differs across ranks (B3, G1)
  kLedger,               // collective ledgers diverged (B4)
  kPlan,                 // generator call count differs from the plan (B5)
  kDigest,               // input/weight/KV/output digest differs (F2, H1, H2)
  kStaleWork,            // call_id regression or reorder window exceeded (D3, D4)
  kOwnership,            // a single-owner object used from another thread (A6)
  kKvLifecycle,          // illegal KV-cache lifecycle transition (F3)
  kAborted,              // this rank already aborted; no backend call allowed
  kBackend,              // the collective backend failed
  kStore,                // the rendezvous store failed
  kJobToken,             // a process presented the wrong job token
  kResource,             // an OS resource is missing (shm space, fds, ...)
  kInternal,             // an invariant of lockstep itself broke
};

// Stable, documented name of a code ("timeout", "ledger", ...), used in logs,
// dumps and doctor verdicts.
std::string_view error_code_name(ErrorCode code);
// The code named `name` (error_code_name's inverse); nullopt for any other text.
std::optional<ErrorCode> error_code_from_name(std::string_view name);

// Process exit code for a fatal error of this class (docs/manual/exit-codes.md).
// 0 is success, 1 an uncaught non-lockstep exception, 2 a usage error.
int exit_code_for(ErrorCode code);

// Exit code when the hard-exit deadline fired because abort itself hung (C5).
inline constexpr int kExitHardDeadline = 70;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message);
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace lockstep
