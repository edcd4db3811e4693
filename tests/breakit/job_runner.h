// Runs the real `lockstep` binary (path in $LOCKSTEP_BIN) as a child process
// under a hard wall-clock bound, the way an operator would, and collects what
// a break-it test asserts on: exit status, stdout JSON, elapsed time, the job
// directory's dumps. A run that outlives its bound is killed (its whole
// process group) and reported as a hang, with every dump found attached.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace lockstep::testing {

struct JobRun {
  int exit_code = -1;       // the process's exit code, or 128+signal
  bool hung = false;        // killed at the bound
  std::chrono::milliseconds elapsed{0};
  std::string stdout_text;
  std::string stderr_text;
  std::filesystem::path job_dir;
  nlohmann::json json;      // parsed stdout when it is JSON, else null
};

// `run --json` with the `defaults` flags, each replaced by a pair of `extra`
// ("--flag", "value", ...) naming the same flag; every other pair of `extra`,
// and every --inject, is added.
using RunFlags = std::vector<std::pair<std::string, std::string>>;
std::vector<std::string> run_json_args(RunFlags defaults, const std::vector<std::string>& extra);

// Starts `lockstep <args...> --job-dir <fresh dir>` and waits at most `bound`.
JobRun run_lockstep(const std::vector<std::string>& args, std::chrono::milliseconds bound);

// Starts the same but returns at once with the child's pid (for C3); the
// caller waits with wait_lockstep().
struct JobHandle {
  pid_t pid = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  std::filesystem::path job_dir;
  std::chrono::steady_clock::time_point started;
};
JobHandle start_lockstep(const std::vector<std::string>& args);
JobRun wait_lockstep(JobHandle& handle, std::chrono::milliseconds bound);

// Every pid whose environment says LOCKSTEP_JOB_DIR=<job_dir> (the job's ranks).
std::vector<pid_t> job_rank_pids(const std::filesystem::path& job_dir);
// The pid of the job's process with RANK=<rank>; -1 when there is none.
pid_t job_rank_pid(const std::filesystem::path& job_dir, int rank);
// Polls `ready` every 10 ms for at most `bound`; whether it became true.
bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds bound);
// The chunks the current Stage 0 has emitted (its progress file); 0 before any.
std::size_t chunks_emitted_so_far(const std::filesystem::path& job_dir);

// Human-readable dump of the job directory's dumps and logs, for failure messages.
std::string describe_job(const JobRun& run);

// The per-rank exit codes from <job_dir>/launch.json (index = rank).
std::vector<int> rank_exit_codes(const std::filesystem::path& job_dir);

}  // namespace lockstep::testing
