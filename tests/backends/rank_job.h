// Helpers for the bodies of multi-process backend tests: each child joins the
// job from its environment (rank_env.h, job_token.h), connects the world
// group over Gloo, and reports what it saw in a file the parent test reads.
#pragma once

#include <chrono>
#include <fstream>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "lockstep/backend.h"
#include "lockstep/error.h"
#include "lockstep/gloo_backend.h"
#include "lockstep/job_token.h"
#include "lockstep/rank_env.h"

namespace lockstep::test {

inline constexpr std::chrono::milliseconds kJoinTimeout{20000};

struct RankJob {
  RankEnv env;
  std::shared_ptr<Store> store;  // the token-checked job key space
  std::unique_ptr<Backend> world;
};

// Joins the job and connects every rank of it as group "world".
inline RankJob join_world(std::chrono::milliseconds connect_timeout = kJoinTimeout) {
  RankJob job;
  job.env = read_rank_env();
  job.store = join_job(open_store(job.env), {job.env.job_id, job.env.job_token}, job.env.rank,
                       connect_timeout);
  BackendGroupSpec spec;
  spec.group_name = "world";
  spec.member_ranks.resize(static_cast<std::size_t>(job.env.world_size));
  std::iota(spec.member_ranks.begin(), spec.member_ranks.end(), 0);
  spec.global_rank = job.env.rank;
  spec.connect_timeout = connect_timeout;
  job.world = GlooBackendFactory(gloo_options_from_environment()).connect(*job.store, spec);
  return job;
}

// A failed check inside a child: printed and turned into exit code 1 by
// run_ranks.
inline void require(bool condition, const std::string& what) {
  if (!condition) throw std::runtime_error("check failed: " + what);
}

// The child's report, read by the parent after the run.
inline std::string report_path(const std::string& job_dir, int rank) {
  return job_dir + "/report-" + std::to_string(rank) + ".txt";
}

inline void write_report(int rank, const std::string& text) {
  std::ofstream(report_path(read_rank_env().job_dir, rank)) << text;
}

inline std::string read_report(const std::string& job_dir, int rank) {
  std::ifstream in(report_path(job_dir, rank));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace lockstep::test
