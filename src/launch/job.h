// Preparing a job before any process exists: options checked, directories
// made, identity generated, program resolved, rank environments built.
// Private to src/launch.
#pragma once

#include <sys/types.h>

#include <string>

#include "launch/spawn.h"
#include "lockstep/launcher.h"

namespace lockstep::launch_detail {

// The job's identity and places, fixed before the first rank starts.
struct JobSetup {
  std::string job_dir;  // absolute
  std::string job_id;
  std::string job_token;
  std::string store;
  std::string program_path;  // resolved executable
};

// Checks the options (Error{kInvalidArgument} naming the field), creates
// <job_dir>, logs/, dumps/ and the default store directory
// (Error{kResource}), generates id and token with getrandom, and resolves the
// program against $PATH (Error{kInvalidArgument} when not executable).
JobSetup prepare_job(const LaunchOptions& options);

// The command for one rank: the launcher's environment, then RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, LOCKSTEP_JOB_DIR, LOCKSTEP_STORE,
// LOCKSTEP_JOB_ID, LOCKSTEP_JOB_TOKEN, LOCKSTEP_LAUNCHER_PID, then
// options.env; a later definition of a name replaces an earlier one.
RankCommand rank_command(const LaunchOptions& options, const JobSetup& job, int rank,
                         pid_t launcher_pid);

}  // namespace lockstep::launch_detail
