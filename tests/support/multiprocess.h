// Multi-process test support: runs the ranks of a job as real forked
// processes under a hard wall bound, so a test can assert how each rank ended
// and report a hang as a failure instead of hanging itself.
//
// Each child gets a fresh environment for the rank (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, LOCKSTEP_JOB_DIR, LOCKSTEP_STORE,
// LOCKSTEP_JOB_ID, LOCKSTEP_JOB_TOKEN; see rank_env.h), dies with its parent
// (PR_SET_PDEATHSIG), runs body(rank) and _exits with its return value. An
// escaping lockstep::Error is printed to stderr and becomes
// exit_code_for(code); any other exception becomes exit code 1.
//
// REQUIRES: the calling process has no other threads when run_ranks() forks
// (gtest's main thread only), so children never inherit a held lock.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace lockstep::test {

// Default hard bound on a whole multi-process run.
inline constexpr std::chrono::milliseconds kRanksWallTimeoutDefault{30000};
inline constexpr int kRanksMax = 64;

struct RanksOptions {
  int world_size = 2;  // 1..kRanksMax
  std::chrono::milliseconds wall_timeout = kRanksWallTimeoutDefault;
  // Empty: "file:<job_dir>/store".
  std::string store_url;
  std::string job_id = "test-job";
  std::string job_token = "test-token-0123456789";
  // Set in every child after the standard variables (may override them).
  std::vector<std::pair<std::string, std::string>> env;
};

struct RankOutcome {
  int rank = -1;
  pid_t pid = -1;
  bool signaled = false;
  int code = 0;  // exit code, or the signal number when signaled
  std::chrono::milliseconds ended_after{0};  // since the first fork

  bool ok() const { return !signaled && code == 0; }
};

struct RanksResult {
  std::string job_dir;  // fresh mkdtemp directory; left for inspection
  // True when the wall bound expired: every child still running was SIGKILLed
  // (and then appears as signaled with SIGKILL).
  bool hung = false;
  std::vector<RankOutcome> ranks;  // indexed by rank

  bool all_ok() const;
  // One line per rank, for assertion messages.
  std::string describe() const;
};

// Forks world_size children running body(rank) and waits for all of them,
// at most options.wall_timeout. Blocking; call from the test's main thread.
// Aborts the test process (LOCKSTEP_ASSERT) when fork or mkdtemp fails.
RanksResult run_ranks(const RanksOptions& options, const std::function<int(int rank)>& body);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it,
// close). Another process may take it before the caller binds it.
int pick_free_tcp_port();

}  // namespace lockstep::test
