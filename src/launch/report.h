// Turning a finished job into words and files: the one-line summary, the dump
// listing and <job_dir>/launch.json. Private to src/launch.
#pragma once

#include <string>
#include <vector>

#include "lockstep/launcher.h"

namespace lockstep::launch_detail {

// A death by signal S is reported as exit code kExitSignalBase + S (shells do).
inline constexpr int kExitSignalBase = 128;

// "exit 20 (timeout)", "exit 3", "signal 9 (SIGKILL)".
std::string describe_rank_end(const RankStatus& status);

// The process exit code that reports `status` (code, or 128+signal).
int exit_code_of(const RankStatus& status);

// The one-line summary of `result` (its end, ranks, timing), no newline.
std::string summarize(const LaunchResult& result);

// Regular files in <job_dir>/dumps, sorted, at most kLaunchDumpFilesMax.
// An unreadable or missing directory lists nothing.
std::vector<std::string> list_dump_files(const std::string& job_dir);

// Writes <job_dir>/launch.json (format "lockstep.launch", version 1) through
// a temporary file and rename, so a reader never sees half a file. The job
// token is never written. Throws Error{kResource} on I/O failure.
void write_launch_json(const LaunchResult& result);

}  // namespace lockstep::launch_detail
