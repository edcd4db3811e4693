// A process with the wrong job token (or job id) is refused at rendezvous
// with kJobToken and cannot disturb the job: the real ranks still connect and
// all-reduce the right answer. Real processes over the file store.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <thread>

#include "backends/outcome.h"
#include "backends/rank_job.h"
#include "lockstep/file_store.h"
#include "support/multiprocess.h"

namespace lockstep::test {
namespace {

constexpr int kJobRanks = 3;
constexpr std::chrono::milliseconds kOpTimeout{15000};
constexpr std::chrono::milliseconds kPublishWait{20000};

// Process ranks >= kJobRanks are intruders, each posing as a job rank.
struct Intruder {
  int poses_as_rank;
  const char* job_id;
  const char* token;
};
constexpr Intruder kIntruders[] = {
    {1, "test-job", "wrong-token-abcdef"},    // wrong secret
    {2, "other-job", "test-token-0123456789"},  // right secret, wrong job
    {0, "test-job", "wrong-token-abcdef"},    // a late second "rank 0"
};
constexpr int kProcesses = kJobRanks + static_cast<int>(std::size(kIntruders));

// Waits (bounded) until the real rank 0 has published its token, so the
// intruding "rank 0" arrives second, as a stale rank would.
void wait_for_published_token() {
  FileStore store(read_rank_env().job_dir + "/store");
  const auto deadline = std::chrono::steady_clock::now() + kPublishWait;
  while (!store.check({"job_token"})) {
    require(std::chrono::steady_clock::now() < deadline, "rank 0 publishes its token");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int real_rank() {
  RankJob job = join_world();
  std::int64_t value = job.env.rank + 1;
  job.world->all_reduce(&value, 1, DType::kI64, ReduceOp::kSum, kOpTimeout);
  require(value == kJobRanks * (kJobRanks + 1) / 2, "all-reduce result of the real job");
  job.world->barrier(kOpTimeout);
  return 0;
}

int intruder(const Intruder& who) {
  setenv("RANK", std::to_string(who.poses_as_rank).c_str(), 1);
  setenv("LOCKSTEP_JOB_ID", who.job_id, 1);
  setenv("LOCKSTEP_JOB_TOKEN", who.token, 1);
  if (who.poses_as_rank == 0) wait_for_published_token();
  const Outcome outcome = attempt([] { join_world(); });
  write_report(static_cast<int>(&who - kIntruders) + kJobRanks, outcome.line() + "\n");
  return 0;
}

TEST(JobToken, WrongTokenIsRefusedAndTheJobRunsOn) {
  RanksOptions options;
  options.world_size = kProcesses;
  options.wall_timeout = std::chrono::milliseconds(60000);
  options.env = {{"WORLD_SIZE", std::to_string(kJobRanks)}, {"LOCAL_WORLD_SIZE", std::to_string(kJobRanks)}};
  const RanksResult result = run_ranks(options, [](int rank) {
    if (rank < kJobRanks) return real_rank();
    setenv("LOCAL_RANK", "0", 1);
    return intruder(kIntruders[rank - kJobRanks]);
  });
  ASSERT_FALSE(result.hung) << result.describe();
  ASSERT_TRUE(result.all_ok()) << result.describe();
  for (int rank = kJobRanks; rank < kProcesses; ++rank) {
    const Outcome seen = Outcome::parse(read_report(result.job_dir, rank));
    EXPECT_EQ(seen.code, "job_token") << "process " << rank << ": " << seen.line();
    EXPECT_NE(seen.message.find("job token mismatch"), std::string::npos) << seen.message;
    EXPECT_NE(seen.message.find("test-job"), std::string::npos) << "names the real job: " << seen.message;
  }
}

}  // namespace
}  // namespace lockstep::test
