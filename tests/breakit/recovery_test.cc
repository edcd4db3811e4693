// Warm recovery break-it cases (issue 18, ctest label `recovery`): real
// `lockstep run --on-fault restart` jobs with a rank killed, stopped or
// failing. A curable fault must end in a completed stream — every chunk of
// the job accounted for, the recovery recorded, only dead ranks restarted —
// and a deterministic one must still end the job as under --on-fault exit,
// with no restart. tests/breakit/CASES.md maps the R- ids to these tests.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "job_runner.h"

namespace lockstep::testing {
namespace {

using std::chrono::milliseconds;

// Start-up, a fault, its detection (a deadline at most), the recovery bound
// (two deadlines) and the rest of the stream, on a loaded 2-core machine.
constexpr milliseconds kRecoveryCaseBound{60'000};
// Waiting for the stream to be under way before a fault from outside.
constexpr milliseconds kStreamStartBound{30'000};
constexpr int kChunks = 40;
constexpr int kNproc = 3;  // Stage 0, leader, worker

// LOCKSTEP_RECOVERY_JOB adds flags to every job (the GPU machine runs these
// cases with "--backend nccl --model small").
std::vector<std::string> restart_args(const std::vector<std::string>& extra) {
  std::vector<std::string> more;
  if (const char* text = std::getenv("LOCKSTEP_RECOVERY_JOB")) {
    std::istringstream words(text);
    for (std::string word; words >> word;) more.push_back(word);
  }
  more.insert(more.end(), extra.begin(), extra.end());
  return run_json_args({{"--on-fault", "restart"}, {"--topology", "pp1"}, {"--nproc", std::to_string(kNproc)},
                        {"--chunks", std::to_string(kChunks)}, {"--hard-cut-every", "0"}, {"--deadline-ms", "1500"},
                        {"--startup-deadline-ms", "20000"}},
                       more);
}

std::vector<int> ints(const nlohmann::json& array) {
  std::vector<int> out;
  for (const auto& value : array) out.push_back(value.get<int>());
  return out;
}

// The stream completed under a later generation: the final Stage 0 emitted
// every chunk from its resume position to the end, in order, with no hard
// cut of the operator's to discard any; the chunks before it were emitted by
// earlier generations (the stream position moves only on an emit).
void expect_recovered_stream(const JobRun& run, const std::set<int>& may_restart) {
  ASSERT_FALSE(run.hung) << "HUNG\n" << describe_job(run);
  ASSERT_EQ(run.exit_code, 0) << describe_job(run);
  ASSERT_TRUE(run.json.is_object()) << describe_job(run);
  const nlohmann::json& s = run.json;
  EXPECT_TRUE(s.value("ok", false));
  ASSERT_GE(s["recoveries"].size(), 1u) << s.dump(2);
  EXPECT_GE(s["generation"].get<int>(), 1);
  for (const auto& recovery : s["recoveries"]) {
    for (const int rank : ints(recovery["restarted_ranks"])) {
      EXPECT_TRUE(may_restart.contains(rank)) << "rank " << rank << " was restarted: " << recovery.dump();
    }
  }
  const auto first = s["first_chunk"].get<int>();
  EXPECT_GE(first, 1) << "nothing was emitted before the fault";
  std::vector<int> emitted;
  for (const auto& chunk : s["emitted"]) emitted.push_back(chunk["chunk_index"].get<int>());
  std::vector<int> expected(static_cast<std::size_t>(kChunks - first));
  for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = first + static_cast<int>(i);
  EXPECT_EQ(emitted, expected) << "chunks not accounted for after resuming at " << first << "\n" << s.dump(2);
  EXPECT_EQ(s["stale_drops"].get<int>(), 0);
  EXPECT_GE(s["resume_ms"].get<std::int64_t>(), 0);
}

JobHandle start_and_wait_for_stream(const std::vector<std::string>& args) {
  JobHandle handle = start_lockstep(args);
  const bool streaming = wait_until([&] { return chunks_emitted_so_far(handle.job_dir) >= 2; }, kStreamStartBound);
  EXPECT_TRUE(streaming) << "the stream never started";
  return handle;
}

// R-C1: Stage 0 is killed (kill -9) mid-stream; its replacement resumes after
// the last chunk emitted; the mesh keeps its processes.
TEST(Recovery, StageZeroKilledIsReplacedAndResumesTheStream) {
  const JobRun run = run_lockstep(restart_args({"--inject", "C1"}), kRecoveryCaseBound);
  expect_recovered_stream(run, {0});
  EXPECT_EQ(ints(run.json["recoveries"][0]["restarted_ranks"]), std::vector<int>{0}) << run.json.dump(2);
}

// R-kill-leader / R-kill-worker: a mesh rank killed from outside.
void kill_mesh_rank(int rank) {
  JobHandle handle = start_and_wait_for_stream(restart_args({"--decode-ms", "20", "--generate-ms", "20"}));
  const pid_t pid = job_rank_pid(handle.job_dir, rank);
  ASSERT_GT(pid, 0) << "rank " << rank << " not found";
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  const JobRun run = wait_lockstep(handle, kRecoveryCaseBound);
  expect_recovered_stream(run, {rank});
  EXPECT_EQ(ints(run.json["recoveries"][0]["restarted_ranks"]), std::vector<int>{rank}) << run.json.dump(2);
}

TEST(Recovery, LeaderKilledIsRestartedOthersKeepTheirProcesses) { kill_mesh_rank(1); }
TEST(Recovery, WorkerKilledIsRestartedOthersKeepTheirProcesses) { kill_mesh_rank(2); }

// R-C4: the worker stops (SIGSTOP) and never wakes: its peers' deadlines
// begin the recovery, and the launcher kills and restarts the rank that did
// not rejoin.
TEST(Recovery, StoppedWorkerIsKilledAndRestartedAfterTheRecoveryBound) {
  const JobRun run = run_lockstep(restart_args({"--inject", "C4"}), kRecoveryCaseBound);
  expect_recovered_stream(run, {2});
  std::set<int> restarted;
  for (const auto& recovery : run.json["recoveries"]) {
    for (const int rank : ints(recovery["restarted_ranks"])) restarted.insert(rank);
  }
  EXPECT_TRUE(restarted.contains(2)) << run.json.dump(2);
}

// R-straggler: the worker stops, the others recover without it, then it
// wakes up (SIGCONT) in a generation that has ended: its own fatal path runs
// there (its dump of the old generation), nothing of that generation reaches
// the stream, and the job completes.
TEST(Recovery, AStragglerWokenAfterTheRecoveryBeganCannotDisturbTheNewGeneration) {
  JobHandle handle = start_and_wait_for_stream(restart_args({"--decode-ms", "20", "--generate-ms", "20"}));
  const pid_t worker = job_rank_pid(handle.job_dir, 2);
  ASSERT_GT(worker, 0);
  ASSERT_EQ(kill(worker, SIGSTOP), 0);
  // Stage 0's own fatal dump of generation 0: its deadline fired and its
  // poison mark began the recovery.
  const bool recovering =
      wait_until([&] { return std::filesystem::exists(handle.job_dir / "dumps" / "rank-0.json"); }, kStreamStartBound);
  kill(worker, SIGCONT);
  ASSERT_TRUE(recovering) << "Stage 0 never timed out on the stopped worker";
  const JobRun run = wait_lockstep(handle, kRecoveryCaseBound);
  expect_recovered_stream(run, {2});
  EXPECT_TRUE(std::filesystem::exists(run.job_dir / "dumps" / "rank-2.json"))
      << "the woken straggler did not take its old generation's fatal path\n" << describe_job(run);
}

// R-B4, R-H1, R-C2: a restart cannot cure a deterministic failure (parity,
// digest, an internal invariant): the job ends as it does under
// --on-fault exit, with the same verdict and no restart.
struct DeterministicCase {
  const char* id;
  int nproc;
  const char* verdict;
};

class RecoveryRefused : public ::testing::TestWithParam<DeterministicCase> {};

TEST_P(RecoveryRefused, DeterministicFaultEndsTheJobWithoutARestart) {
  const DeterministicCase& c = GetParam();
  const JobRun run = run_lockstep(restart_args({"--inject", c.id, "--nproc", std::to_string(c.nproc)}),
                                  kRecoveryCaseBound);
  ASSERT_FALSE(run.hung) << c.id << " HUNG\n" << describe_job(run);
  EXPECT_NE(run.exit_code, 0) << describe_job(run);
  ASSERT_TRUE(run.json.is_object()) << describe_job(run);
  EXPECT_EQ(run.json["doctor"].value("verdict", ""), c.verdict) << run.json.dump(2);
  std::ifstream in(run.job_dir / "launch.json");
  const nlohmann::json launch = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(launch.is_object());
  EXPECT_TRUE(launch["recoveries"].empty()) << c.id << " was restarted: " << launch["recoveries"].dump(2);
  EXPECT_EQ(launch["generation"].get<int>(), 0);
}

INSTANTIATE_TEST_SUITE_P(Cases, RecoveryRefused,
                         ::testing::Values(DeterministicCase{"B4", 3, "parity"}, DeterministicCase{"H1", 5, "digest"},
                                           DeterministicCase{"C2", 3, "stranded_commit"}),
                         [](const ::testing::TestParamInfo<DeterministicCase>& info) {
                           return std::string(info.param.id);
                         });

}  // namespace
}  // namespace lockstep::testing
