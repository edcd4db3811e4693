// The standard rank environment (SPEC §4A, §6): what a rank learns about its
// job from environment variables, set by `lockstep launch`, torchrun or SLURM.
//
//   rank             RANK              else SLURM_PROCID
//   world_size       WORLD_SIZE        else SLURM_NTASKS
//   local_rank       LOCAL_RANK        else SLURM_LOCALID
//   local_world_size LOCAL_WORLD_SIZE  else SLURM_NTASKS_PER_NODE, else this
//                                      node's entry (SLURM_NODEID) of
//                                      SLURM_TASKS_PER_NODE ("2(x3),1")
//   job_dir          LOCKSTEP_JOB_DIR  (required; dumps go to <job_dir>/dumps)
//   store_url        LOCKSTEP_STORE    "file:<dir>" | "redis:<host>:<port>";
//                                      default "file:<job_dir>/store"
//   job_id           LOCKSTEP_JOB_ID   (required)
//   job_token        LOCKSTEP_JOB_TOKEN (required)
//   generation       LOCKSTEP_GENERATION (default 0; bumped by the launcher
//                    at each restart of the job's ranks, job_token.h)
//
// The torchrun names win when both families are present (torchrun under srun
// sets both, and SLURM's then describe the per-node agent, not the rank).
// LOCAL_RANK and LOCAL_WORLD_SIZE (or their SLURM forms) are optional
// together: when both are absent the job is taken to be on one host
// (local_rank = rank, local_world_size = world_size).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "lockstep/store.h"

namespace lockstep {

// More ranks than this are refused as a configuration mistake.
inline constexpr int kWorldSizeMax = 65536;

struct RankEnv {
  int rank = -1;
  int world_size = 0;
  int local_rank = -1;
  int local_world_size = 0;
  std::string job_dir;
  std::string store_url;
  std::string job_id;
  std::string job_token;
  std::uint32_t generation = 0;

  std::string dumps_dir() const { return job_dir + "/dumps"; }
};

// Looks one variable up; nullopt when unset. An empty value counts as set.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// Parses the variables above through `lookup`. Pure apart from lookup;
// thread-safe when lookup is. Throws Error{kInvalidArgument} whose message
// names the variable for a missing required value, a value that is not a
// whole number in range, or an inconsistent set (RANK >= WORLD_SIZE,
// LOCAL_RANK >= LOCAL_WORLD_SIZE, LOCAL_WORLD_SIZE > WORLD_SIZE, only one of
// LOCAL_RANK / LOCAL_WORLD_SIZE, a malformed LOCKSTEP_STORE).
RankEnv parse_rank_env(const EnvLookup& lookup);

// parse_rank_env over the process environment (getenv). Call before starting
// threads that may setenv; same throws.
RankEnv read_rank_env();

// Opens the job's base store named by env.store_url: a FileStore for "file:",
// a RedisStore (namespace = job id) for "redis:". Blocking while it connects.
// Throws Error{kInvalidArgument} for a malformed URL, Error{kStore} when the
// store cannot be opened. The result is not yet token-checked: pass it to
// join_job (job_token.h) before using it for anything else.
std::shared_ptr<Store> open_store(const RankEnv& env);
// The same from the URL and the job id (the launcher's view of the job).
std::shared_ptr<Store> open_store(const std::string& store_url, const std::string& job_id);

}  // namespace lockstep
