// Preparing a job before any process exists: options checked, directories
// made, identity generated, program resolved, rank environments built.
// Private to src/launch.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// PyTorch flight recorder settings of a job: entries kept per rank.
inline constexpr int kTorchFlightRecorderEntries = 2000;
// Dump files and dump-request pipes of PyTorch's flight recorder in
// <job_dir>/dumps: <prefix><rank> (the doctor's default prefix) and
// <pipe prefix><rank>.pipe (torch makes the FIFO and dumps when it is written).
inline constexpr std::string_view kTorchFrDumpPrefix = "nccl_trace_rank_";
inline constexpr std::string_view kTorchFrPipePrefix = "nccl_trace_pipe_";

// The variables that turn PyTorch's flight recorder on with dumps in the job's
// dumps directory. The launcher sets each unless its environment has it.
std::vector<std::pair<std::string, std::string>> torch_flight_recorder_env(const std::string& job_dir);

// The command for the rank `local_rank` of this machine, started into
// `generation` (options.generation, or a later one after a recovery): the launcher's
// environment, then torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, GROUP_RANK, ROLE_RANK, ROLE_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, TORCHELASTIC_RUN_ID) and lockstep's (LOCKSTEP_JOB_DIR,
// LOCKSTEP_STORE, LOCKSTEP_JOB_ID, LOCKSTEP_JOB_TOKEN, LOCKSTEP_GENERATION,
// LOCKSTEP_LAUNCHER_PID), then options.env; a later definition of a name
// replaces an earlier one.
RankCommand rank_command(const LaunchOptions& options, const JobSetup& job, int local_rank, std::uint32_t generation,
                         pid_t launcher_pid);

}  // namespace lockstep::launch_detail
