#include "lockstep/error.h"

#include <cstdio>
#include <cstdlib>

#include "lockstep/assert.h"

namespace lockstep {

Error::Error(ErrorCode code, const std::string& message)
    : std::runtime_error(std::string(error_code_name(code)) + ": " + message), code_(code) {}

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kEncode: return "encode";
    case ErrorCode::kDecode: return "decode";
    case ErrorCode::kChecksum: return "checksum";
    case ErrorCode::kVersion: return "version";
    case ErrorCode::kSchema: return "schema";
    case ErrorCode::kLimit: return "limit";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kPeerFailure: return "peer_failure";
    case ErrorCode::kMembership: return "membership";
    case ErrorCode::kPhase: return "phase";
    case ErrorCode::kParity: return "parity";
    case ErrorCode::kLedger: return "ledger";
    case ErrorCode::kPlan: return "plan";
    case ErrorCode::kDigest: return "digest";
    case ErrorCode::kStaleWork: return "stale_work";
    case ErrorCode::kOwnership: return "ownership";
    case ErrorCode::kKvLifecycle: return "kv_lifecycle";
    case ErrorCode::kAborted: return "aborted";
    case ErrorCode::kBackend: return "backend";
    case ErrorCode::kStore: return "store";
    case ErrorCode::kJobToken: return "job_token";
    case ErrorCode::kResource: return "resource";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

std::optional<ErrorCode> error_code_from_name(std::string_view name) {
  for (auto value = static_cast<int>(ErrorCode::kInvalidArgument); value <= static_cast<int>(ErrorCode::kInternal);
       ++value) {
    const auto code = static_cast<ErrorCode>(value);
    if (error_code_name(code) == name) return code;
  }
  return std::nullopt;
}

// Exit codes group error classes so a supervisor can act without parsing text.
// Documented in docs/manual/exit-codes.md; keep the two in step.
int exit_code_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return 2;
    case ErrorCode::kEncode:
    case ErrorCode::kDecode:
    case ErrorCode::kChecksum:
    case ErrorCode::kSchema:
    case ErrorCode::kLimit: return 10;  // wire protocol violation
    case ErrorCode::kVersion: return 11;
    case ErrorCode::kTimeout: return 20;
    case ErrorCode::kPeerFailure: return 21;
    case ErrorCode::kAborted: return 22;
    case ErrorCode::kBackend: return 23;
    case ErrorCode::kStore: return 24;
    case ErrorCode::kJobToken: return 25;
    case ErrorCode::kResource: return 26;
    case ErrorCode::kMembership: return 30;
    case ErrorCode::kPhase: return 31;
    case ErrorCode::kParity: return 32;
    case ErrorCode::kLedger: return 33;
    case ErrorCode::kPlan: return 34;
    case ErrorCode::kOwnership: return 35;
    case ErrorCode::kDigest: return 40;
    case ErrorCode::kStaleWork: return 41;
    case ErrorCode::kKvLifecycle: return 42;
    case ErrorCode::kInternal: return 60;
  }
  return 60;
}

namespace detail {
void assert_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "lockstep: assertion failed: %s at %s:%d\n", expr, file, line);
  std::fflush(stderr);
  std::abort();
}
}  // namespace detail

}  // namespace lockstep
