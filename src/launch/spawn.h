// Process creation for the launcher: the per-rank fork/exec with its
// parent-death wiring, and the sentinel that outlives a SIGKILLed launcher just
// long enough to kill the ranks' process groups. Private to src/launch.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "launch/fd.h"

namespace lockstep::launch_detail {

// Exit code of a rank process that could not reach execve (as in POSIX shells).
inline constexpr int kExitSpawnFailed = 127;

// Everything the child needs, prepared before fork(): the child may only make
// async-signal-safe calls, so it must not allocate.
struct RankCommand {
  std::string path;               // resolved executable
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> envp;  // "NAME=value"
};

struct SpawnedRank {
  pid_t pid = -1;  // also the rank's process-group id
  Fd stdout_read;
  Fd stderr_read;
};

class Sentinel;

// Forks rank `rank` into its own process group with PR_SET_PDEATHSIG(SIGKILL),
// stdin on /dev/null and stdout/stderr on fresh pipes, registers its group with
// the sentinel, and only then lets it exec (so no descendant of the rank can
// exist before the sentinel guards its group). Blocking only for fork itself.
// Launcher thread only. Throws Error{kResource} naming the rank.
SpawnedRank spawn_rank(const RankCommand& command, int rank, pid_t launcher_pid,
                       int devnull_fd, Sentinel& sentinel);

// A forked helper that reads process-group ids from a pipe whose only writer
// is the launcher. On EOF (the launcher died, even by SIGKILL) it SIGKILLs every
// group it was told about; on a disarm record it exits quietly. It ignores
// SIGTERM/SIGINT/SIGHUP so a terminal's Ctrl-C reaching the launcher's group
// cannot remove it before it is needed.
class Sentinel {
 public:
  // Forks the sentinel. Call before any rank exists and while SIGCHLD is
  // blocked. Throws Error{kResource}.
  explicit Sentinel(int devnull_fd);
  // Disarms and reaps it if disarm() was not called.
  ~Sentinel();
  Sentinel(const Sentinel&) = delete;
  Sentinel& operator=(const Sentinel&) = delete;

  // Adds a process group to kill if the launcher dies. Non-blocking in
  // practice (a 4-byte pipe write). Throws Error{kResource} if the sentinel is
  // gone, since then the SIGKILL guarantee would silently not hold.
  void guard(pid_t pgid);

  // Tells the sentinel to exit without killing and reaps it; bounded by
  // kSentinelExitMs, after which it is SIGKILLed. Idempotent.
  void disarm();

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  Fd write_;
};

}  // namespace lockstep::launch_detail
