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
  std::string master_addr;   // torch's MASTER_ADDR / MASTER_PORT (nodes.h)
  int master_port = 0;
};

// Checks the options (Error{kInvalidArgument} naming the field), creates
// <job_dir>, logs/, dumps/ and the default store directory
// (Error{kResource}), generates id and token with getrandom, and resolves the
// program against $PATH (Error{kInvalidArgument} when not executable).
JobSetup prepare_job(const LaunchOptions& options);

// The command for the rank `local_rank` of this machine: the launcher's
// environment, then torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, GROUP_RANK, ROLE_RANK, ROLE_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, TORCHELASTIC_RUN_ID) and lockstep's (LOCKSTEP_JOB_DIR,
// LOCKSTEP_STORE, LOCKSTEP_JOB_ID, LOCKSTEP_JOB_TOKEN, LOCKSTEP_GENERATION,
// LOCKSTEP_LAUNCHER_PID), then options.env; a later definition of a name
// replaces an earlier one.
RankCommand rank_command(const LaunchOptions& options, const JobSetup& job, int local_rank,
                         pid_t launcher_pid);

}  // namespace lockstep::launch_detail
