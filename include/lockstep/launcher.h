// The crash-only launcher: spawns the N ranks of one job on this host and
// supervises them so that no rank outlives the job and no failure goes
// unnoticed. Used by `lockstep launch` and `lockstep run` (SPEC §6, break-it C3).
//
// A drop-in for torchrun: every rank gets what torch's env:// init expects
// (MASTER_ADDR, MASTER_PORT, RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
// GROUP_RANK, ROLE_RANK, ROLE_WORLD_SIZE, TORCHELASTIC_RUN_ID) besides
// lockstep's own (LOCKSTEP_JOB_DIR, _STORE, _JOB_ID, _JOB_TOKEN, _GENERATION,
// _LAUNCHER_PID). A job may span machines: one launcher per machine
// (nnodes, node_rank) sharing a store (Redis); node 0 publishes MASTER_ADDR
// and MASTER_PORT there, and a failure on any machine is published there too,
// so every machine's launcher stops its ranks within one supervision tick.
//
// Guarantees, on every path:
// - When a rank exits non-zero or by a signal, every other rank's process group
//   gets SIGTERM, then SIGKILL after grace_ms.
// - When the launcher receives SIGTERM, SIGINT or SIGHUP, it does the same and
//   returns (a second such signal skips the grace and SIGKILLs at once).
// - When the launcher itself is SIGKILLed, each rank gets SIGKILL through
//   PR_SET_PDEATHSIG, and a sentinel process (forked before any rank, reading a
//   pipe whose only writer is the launcher) SIGKILLs every rank's process group
//   on the pipe's EOF, which also reaches the ranks' own children.
// - A rank's process group is SIGKILLed before the rank is reaped, so a child a
//   rank left behind never survives it (the zombie pins the group id).
// Out of reach: descendants that leave their rank's process group (setsid).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lockstep/recovery.h"

namespace lockstep {

// More ranks than this on one host are refused (each rank holds 3 fds here).
inline constexpr int kLaunchNprocMax = 256;
// More machines than this in one job are refused as a typo.
inline constexpr int kLaunchNodesMax = 1024;
// How long a launcher of node > 0 waits for node 0's MASTER_ADDR/PORT.
inline constexpr std::int64_t kLaunchRendezvousMsDefault = 60'000;
// How long a survivor may take to rejoin the next generation before the
// launcher kills it and starts it again (LaunchOptions::recovery_ms).
inline constexpr std::int64_t kLaunchRecoveryMsDefault = 10'000;
// A longer end bound is refused as a typo (a day).
inline constexpr std::int64_t kLaunchEndBoundMsMax = 86'400'000;
// Default SIGTERM → SIGKILL grace.
inline constexpr std::int64_t kLaunchGraceMsDefault = 5000;
// A rank's output line longer than this is forwarded in pieces of this size.
inline constexpr std::size_t kLaunchLineBytesMax = 4000;
// At most this many dump files are listed after a failure.
inline constexpr std::size_t kLaunchDumpFilesMax = 1024;

struct LaunchResult;

struct LaunchOptions {
  int nproc = 1;  // ranks on this machine, 1..kLaunchNprocMax
  int nnodes = 1;     // machines, 1..kLaunchNodesMax (each runs one launcher)
  int node_rank = 0;  // this machine, 0..nnodes-1; its ranks are node_rank*nproc + 0..nproc-1
  // torch's MASTER_ADDR / MASTER_PORT. Empty / 0: 127.0.0.1 and a free port
  // on one machine; on several, node 0 uses its host name (or this address)
  // and a free port (or this one) and publishes both in the store.
  std::string master_addr;
  int master_port = 0;  // 0 or 1..65535
  std::int64_t rendezvous_ms = kLaunchRendezvousMsDefault;  // > 0; nodes > 0 wait this long for node 0
  // The job's generation (job_token.h): part of every key, ring and poison
  // mark its ranks use. 0..kJobGenerationMax.
  std::uint32_t generation = 0;
  // Warm recovery (recovery.h). kRestart: when a rank dies of a curable
  // cause (restart_can_cure_exit: a deadline, a peer, the backend or store,
  // a hung abort, a signal such as kill -9) or a rank's poison mark appears
  // in the current generation, the launcher begins the next generation
  // (begin_generation) and starts again only the ranks that died; the
  // survivors join it in place. A rank that has not rejoined within
  // recovery_ms (stopped, wedged) is killed and started again. At most
  // restarts_max recoveries per restart_window_ms; past that, or for any
  // other cause, the job ends as under kExit. One machine (nnodes 1).
  OnFault on_fault = OnFault::kExit;
  int restarts_max = kRestartsPerWindowDefault;
  std::int64_t restart_window_ms = kRestartWindowMsDefault;
  std::int64_t recovery_ms = kLaunchRecoveryMsDefault;
  // Created (with parents) if absent. Empty: a fresh mkdtemp directory
  // "lockstep-job-XXXXXX" under $TMPDIR (or /tmp).
  std::string job_dir;
  // Program and its arguments; a program without '/' is looked up in $PATH.
  std::vector<std::string> argv;
  // Added to (or replacing in) the launcher's environment for every rank,
  // after the standard variables, so a caller can override them deliberately.
  std::vector<std::pair<std::string, std::string>> env;
  std::int64_t grace_ms = kLaunchGraceMsDefault;  // >= 0
  // Hard bound on the whole job; 0 means none. On expiry the ranks are
  // stopped as after a failure and the result carries exit_code_for(kTimeout).
  std::int64_t timeout_ms = 0;
  // Bound on the end of the job; 0 means none, at most kLaunchEndBoundMsMax.
  // Once a rank of this machine has exited 0, every other rank of this
  // machine must exit within end_bound_ms: one still running then hangs at
  // the end (in a teardown, a destroy), and the ranks are stopped as after a
  // failure, that rank named, exit_code_for(kTimeout).
  std::int64_t end_bound_ms = 0;
  // Several machines need all three, equal on every machine's launcher.
  std::string job_id;     // empty: "job-" + 16 random hex digits
  std::string job_token;  // empty: 32 random hex digits (getrandom)
  std::string store;      // empty: "file:<job_dir>/store" (directory created)
  // Prefix each rank's output lines with "[rank R] " onto the launcher's
  // stdout/stderr. Every line also goes to <job_dir>/logs/rank-R.log either way.
  bool forward_output = true;
  // Called once, on the launcher's thread, after a failed job has been fully
  // stopped and its dumps listed (result.exit_code != 0). Exceptions propagate
  // out of launch().
  std::function<void(const LaunchResult&)> on_failure;
};

// How one rank ended.
struct RankStatus {
  enum class End : std::uint8_t { kExited, kSignaled };
  int rank = -1;  // global rank
  pid_t pid = -1;
  End end = End::kExited;
  int code = 0;  // exit code for kExited, signal number for kSignaled
  // True when the launcher had already sent this rank a stop signal
  // (SIGTERM); killed_by_launcher when that became SIGKILL after the grace.
  // A rank that died of SIGKILL the launcher never sent was killed from
  // outside (kill -9, the OOM killer), even if it was reaped during the stop.
  bool stopped_by_launcher = false;
  bool killed_by_launcher = false;
  std::int64_t ended_after_ms = 0;  // since launch() started the first rank
};

// Why the job ended.
enum class LaunchEnd : std::uint8_t {
  kSuccess,          // every rank exited 0
  kRankFailed,       // a rank exited non-zero or by a signal
  kTimeout,          // LaunchOptions::timeout_ms or end_bound_ms expired
  kLauncherSignaled,  // SIGTERM/SIGINT/SIGHUP reached the launcher
  kPeerNodeFailed    // another machine's launcher published its job's failure
};

struct LaunchResult {
  std::string job_dir;
  std::string job_id;
  LaunchEnd end = LaunchEnd::kSuccess;
  std::vector<RankStatus> ranks;  // this machine's, indexed by local rank
  int node_rank = 0;
  std::string peer_node_failure;  // kPeerNodeFailed: what the other machine published
  // Local index; set when end == kRankFailed, and for kTimeout by the end
  // bound (the first rank still running then).
  int first_failed_rank = -1;
  // The rank whose failure the others followed, set when end == kRankFailed:
  // the first failed rank that did not end as a follower does (exit
  // peer_failure, 128+SIGTERM, or a signal after the launcher's stop). A rank
  // that sees its peer die often exits before the dying rank is reaped, so
  // first_failed_rank alone would blame the witness. Equals first_failed_rank
  // when every failed rank ended as a follower.
  int cause_rank = -1;
  // The first SIGTERM/SIGINT/SIGHUP the launcher received, whatever the end.
  int launcher_signal = 0;
  int stopped_ranks = 0;          // ranks still running when the stop began
  std::int64_t wall_ms = 0;
  // Wall-clock (Unix epoch) time the first rank was started: ended_after_ms
  // of every rank is relative to it, so a fault time a rank recorded can be
  // compared with when every rank was gone.
  std::int64_t started_unix_ms = 0;
  // 0 on success; the cause rank's exit code, or 128+signal when it died by
  // a signal; exit_code_for(kTimeout) on timeout; 128+signal when the
  // launcher was signalled; exit_code_for(kPeerFailure) when another
  // machine failed.
  int exit_code = 0;
  // Warm recovery: one entry per generation begun after the first.
  struct Recovery {
    std::uint32_t generation = 0;  // the generation it began
    std::string cause;             // "rank 2 killed by signal 9", "rank 1: timeout: ..."
    std::int64_t after_ms = 0;     // since the first rank started
    std::vector<int> restarted_ranks;  // global ranks started again (the rest rejoined in place)
  };
  std::vector<Recovery> recoveries;
  std::uint32_t generation = 0;  // the last generation begun
  std::string summary;                  // one line, no newline
  std::vector<std::string> dump_files;  // <job_dir>/dumps/*, sorted, on failure
  // Rank output lines that the console did not accept within a short bounded
  // wait (a stalled reader; supervision never blocks on the console), or that
  // could not be written to the log file.
  std::int64_t console_lines_dropped = 0;
  std::int64_t log_lines_dropped = 0;
};

// Runs the job to its end and returns how it ended; blocks until every rank
// has been reaped (bounded by timeout_ms + grace_ms when timeout_ms > 0, else
// by the ranks themselves; their end by end_bound_ms + grace_ms when > 0).
// Writes <job_dir>/launch.json and, on failure, prints the summary and the
// dump files on stderr.
//
// Threads: call from the main thread before other threads start, or with
// SIGCHLD, SIGTERM, SIGINT, SIGHUP and SIGPIPE blocked in every other thread:
// the launcher blocks them on its own thread and reads them through a
// signalfd, and sets SIGCHLD to SIG_DFL (restoring mask and disposition on
// return). No other code of the process may reap children with waitpid(-1)
// meanwhile. The calling thread is the ranks' parent for PR_SET_PDEATHSIG and
// must not exit while launch() runs.
//
// Throws Error{kInvalidArgument} for bad options (naming the field) or a
// program that is not an executable file, before anything is created;
// Error{kResource} when a directory, pipe, file or process cannot be created;
// Error{kInternal} when a rank was reaped outside the launcher. Ranks already
// started are SIGKILLed and reaped before any exception leaves launch().
LaunchResult launch(const LaunchOptions& options);

// What a SLURM allocation says about this launcher's place in the job, for
// `lockstep launch` under srun with one task per machine (SLURM_NNODES,
// SLURM_NODEID, the first host of SLURM_JOB_NODELIST, SLURM_JOB_ID).
// nullopt outside SLURM (no SLURM_JOB_ID). Throws Error{kInvalidArgument}
// naming the variable for a malformed value.
struct SlurmPlacement {
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr;  // the first host of the allocation
  std::string job_id;       // "slurm-<SLURM_JOB_ID>"
};
std::optional<SlurmPlacement> slurm_placement(
    const std::function<std::optional<std::string>(const std::string&)>& lookup);

// Expands a SLURM host list ("node[01-03,07],gpu5" -> node01 node02 node03
// node07 gpu5), at most kLaunchNodesMax hosts. Throws Error{kInvalidArgument}
// naming the list for an unbalanced bracket, a bad range or too many hosts.
std::vector<std::string> expand_slurm_nodelist(const std::string& nodelist);

// "timeout" for 20, "peer_failure" for 21, "encode/decode/checksum/schema/limit"
// for 10, "hard_deadline" for kExitHardDeadline, "uncaught_exception" for 1;
// empty for a code lockstep does not document. Pure; thread-safe.
std::string exit_code_meaning(int exit_code);

}  // namespace lockstep
