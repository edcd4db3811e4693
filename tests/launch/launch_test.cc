// lockstep::launch() in-process: ranks are small /bin/sh scripts that report
// through files in the job directory. Every wait is bounded: the launcher's
// own timeout_ms is set on each job as a backstop against a hang.
#include <gtest/gtest.h>

#include <filesystem>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "launch/process_util.h"
#include "lockstep/error.h"
#include "lockstep/launcher.h"

namespace lockstep {
namespace {

using namespace std::chrono_literals;
using launch_test::process_gone;
using launch_test::read_file;
using launch_test::read_pids;
using launch_test::ScratchDir;
using launch_test::wait_until;

// Backstop for every job in this file; each test ends far sooner.
constexpr std::int64_t kJobTimeoutMs = 20000;
// A shell fragment that waits (bounded: 400 × 25 ms) until $1 files named
// ready-* exist in the job directory.
constexpr const char* kWaitReady =
    "wait_ready() { i=0; while [ \"$(ls \"$LOCKSTEP_JOB_DIR\" | grep -c '^ready-')\" -lt \"$1\" ]; "
    "do i=$((i+1)); [ $i -gt 400 ] && exit 99; sleep 0.025; done; }; ";

LaunchOptions sh_job(const ScratchDir& dir, int nproc, const std::string& script) {
  LaunchOptions options;
  options.nproc = nproc;
  options.job_dir = dir.str();
  options.argv = {"/bin/sh", "-c", std::string(kWaitReady) + script};
  options.timeout_ms = kJobTimeoutMs;
  options.forward_output = false;
  return options;
}

std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

// Three ranks: once all are up, rank 0 (the witness) exits `witness_exit`;
// rank 1 runs `rank1_on_term` when the launcher's SIGTERM reaches it; rank 2
// only follows the stop. The grace is long: no rank is killed by the launcher.
LaunchResult launch_witness_job(const ScratchDir& dir, int witness_exit, const std::string& rank1_on_term) {
  LaunchOptions options = sh_job(
      dir, 3,
      "if [ \"$RANK\" = 0 ]; then wait_ready 2; exit " + std::to_string(witness_exit) + "; fi; "
      "if [ \"$RANK\" = 1 ]; then trap '" + rank1_on_term + "' TERM; fi; "
      "touch \"$LOCKSTEP_JOB_DIR/ready-$RANK\"; sleep 100 & wait");
  options.grace_ms = 15000;
  return launch(options);
}

TEST(Launch, AllRanksSucceedWithTheStandardEnvironment) {
  ScratchDir dir;
  LaunchOptions options = sh_job(
      dir, 4,
      "test \"$RANK\" -lt \"$WORLD_SIZE\" || exit 3; echo \"$RANK $WORLD_SIZE $LOCAL_RANK "
      "$LOCAL_WORLD_SIZE $LOCKSTEP_JOB_ID $LOCKSTEP_JOB_TOKEN $LOCKSTEP_STORE "
      "$LOCKSTEP_LAUNCHER_PID $LOCKSTEP_JOB_DIR $EXTRA\" > \"$LOCKSTEP_JOB_DIR/env-$RANK\"; "
      "echo \"hello from $RANK\"");
  options.env = {{"EXTRA", "extra-value"}};
  const LaunchResult result = launch(options);

  EXPECT_EQ(result.end, LaunchEnd::kSuccess);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.first_failed_rank, -1);
  ASSERT_EQ(result.ranks.size(), 4u);
  std::string token;
  for (int rank = 0; rank < 4; ++rank) {
    const RankStatus& status = result.ranks[static_cast<std::size_t>(rank)];
    EXPECT_EQ(status.end, RankStatus::End::kExited);
    EXPECT_EQ(status.code, 0) << "rank " << rank;
    EXPECT_FALSE(status.stopped_by_launcher);
    const auto words = split_words(read_file(dir.path() / ("env-" + std::to_string(rank))));
    ASSERT_EQ(words.size(), 10u) << "rank " << rank;
    EXPECT_EQ(words[0], std::to_string(rank));
    EXPECT_EQ(words[1], "4");
    EXPECT_EQ(words[2], std::to_string(rank));
    EXPECT_EQ(words[3], "4");
    EXPECT_EQ(words[4], result.job_id);
    EXPECT_TRUE(std::regex_match(words[5], std::regex("[0-9a-f]{32}"))) << words[5];
    if (rank == 0) token = words[5];
    EXPECT_EQ(words[5], token) << "every rank gets the same token";
    EXPECT_EQ(words[6], "file:" + dir.str() + "/store");
    EXPECT_EQ(words[7], std::to_string(::getpid()));
    EXPECT_EQ(words[8], dir.str());
    EXPECT_EQ(words[9], "extra-value");
    EXPECT_EQ(read_file(dir.path() / "logs" / ("rank-" + std::to_string(rank) + ".log")),
              "hello from " + std::to_string(rank) + "\n");
  }
  EXPECT_TRUE(std::filesystem::is_directory(dir.path() / "store"));
  EXPECT_TRUE(std::filesystem::is_directory(dir.path() / "dumps"));
  const auto json = nlohmann::json::parse(read_file(dir.path() / "launch.json"));
  EXPECT_EQ(json.at("end"), "success");
  EXPECT_EQ(json.at("exit_code"), 0);
  EXPECT_EQ(json.at("ranks").size(), 4u);
  EXPECT_EQ(json.dump().find(token), std::string::npos) << "the token must not be written";
}

TEST(Launch, RanksGetWhatTorchEnvInitExpects) {
  ScratchDir dir;
  LaunchOptions options = sh_job(
      dir, 2,
      "echo \"$MASTER_ADDR $MASTER_PORT $GROUP_RANK $ROLE_RANK $ROLE_WORLD_SIZE $TORCHELASTIC_RUN_ID "
      "$LOCKSTEP_GENERATION\" > \"$LOCKSTEP_JOB_DIR/env-$RANK\"");
  options.generation = 3;
  const LaunchResult result = launch(options);
  ASSERT_EQ(result.exit_code, 0);
  for (int rank = 0; rank < 2; ++rank) {
    const auto words = split_words(read_file(dir.path() / ("env-" + std::to_string(rank))));
    ASSERT_EQ(words.size(), 7u) << "rank " << rank;
    EXPECT_EQ(words[0], "127.0.0.1");
    EXPECT_GT(std::stoi(words[1]), 0);
    EXPECT_EQ(words[2], "0");
    EXPECT_EQ(words[3], std::to_string(rank));
    EXPECT_EQ(words[4], "2");
    EXPECT_EQ(words[5], result.job_id);
    EXPECT_EQ(words[6], "3");
  }
}

TEST(Launch, PytorchRanksAreAskedToDumpTheirFlightRecorderBeforeTheStop) {
  // Each rank plays torch's watchdog: a FIFO at the dump-request pipe the
  // launcher names, and a dump written when a request arrives. Rank 1 fails;
  // rank 0 must be asked, and dump, before its SIGTERM.
  ScratchDir dir;
  LaunchOptions options = sh_job(
      dir, 2,
      "P=\"${TORCH_NCCL_DEBUG_INFO_PIPE_FILE}${RANK}.pipe\"; mkfifo \"$P\" || exit 9; "
      "trap 'echo sigterm >> \"$LOCKSTEP_JOB_DIR/order-$RANK\"; exit 143' TERM; "
      "(read line < \"$P\" && echo dumped >> \"$LOCKSTEP_JOB_DIR/order-$RANK\" && "
      " echo fr > \"${TORCH_NCCL_DEBUG_INFO_TEMP_FILE}${RANK}\") & "
      "touch \"$LOCKSTEP_JOB_DIR/ready-$RANK\"; wait_ready 2; "
      "if [ \"$RANK\" = 1 ]; then exit 7; fi; wait; sleep 100 & wait");
  options.grace_ms = 5000;
  const LaunchResult result = launch(options);
  EXPECT_EQ(result.exit_code, 7) << result.summary;
  EXPECT_EQ(read_file(dir.path() / "order-0"), "dumped\nsigterm\n") << "the dump came before the stop";
  EXPECT_EQ(read_file(dir.path() / "dumps" / "nccl_trace_rank_0"), "fr\n");
}

TEST(Launch, GeneratedIdentityDiffersPerJobAndCallerValuesWin) {
  ScratchDir dir;
  LaunchOptions options = sh_job(dir, 1, "echo \"$LOCKSTEP_JOB_ID $LOCKSTEP_JOB_TOKEN "
                                         "$LOCKSTEP_STORE $RANK\" > \"$LOCKSTEP_JOB_DIR/id\"");
  const LaunchResult first = launch(options);
  const std::string first_id = read_file(dir.path() / "id");
  ASSERT_EQ(launch(options).exit_code, 0);
  EXPECT_NE(read_file(dir.path() / "id"), first_id);
  EXPECT_EQ(first.exit_code, 0);

  options.job_id = "my-job";
  options.job_token = "my-token";
  options.store = "redis:127.0.0.1:6379/x";
  options.env = {{"RANK", "7"}};  // a deliberate override replaces the standard value
  ASSERT_EQ(launch(options).exit_code, 0);
  EXPECT_EQ(read_file(dir.path() / "id"), "my-job my-token redis:127.0.0.1:6379/x 7\n");
}

TEST(Launch, OneRankFailsAndARankIgnoringSigtermIsKilledAfterTheGrace) {
  ScratchDir dir;
  constexpr std::int64_t kGraceMs = 300;
  LaunchOptions options = sh_job(
      dir, 4,
      "if [ \"$RANK\" = 2 ]; then wait_ready 3; exit 20; fi; "
      "trap '' TERM; touch \"$LOCKSTEP_JOB_DIR/ready-$RANK\"; sleep 100");
  options.grace_ms = kGraceMs;
  const LaunchResult result = launch(options);

  EXPECT_EQ(result.end, LaunchEnd::kRankFailed);
  EXPECT_EQ(result.first_failed_rank, 2);
  EXPECT_EQ(result.exit_code, 20);
  EXPECT_EQ(result.stopped_ranks, 3);
  const RankStatus& failed = result.ranks[2];
  EXPECT_EQ(failed.end, RankStatus::End::kExited);
  EXPECT_FALSE(failed.stopped_by_launcher);
  for (int rank : {0, 1, 3}) {
    const RankStatus& status = result.ranks[static_cast<std::size_t>(rank)];
    EXPECT_EQ(status.end, RankStatus::End::kSignaled) << "rank " << rank;
    EXPECT_EQ(status.code, SIGKILL) << "rank " << rank << " ignores SIGTERM";
    EXPECT_TRUE(status.stopped_by_launcher);
    EXPECT_TRUE(status.killed_by_launcher);
    const std::int64_t stop_ms = status.ended_after_ms - failed.ended_after_ms;
    EXPECT_GE(stop_ms, kGraceMs - 10) << "SIGKILL came before the grace ran out";
    EXPECT_LT(stop_ms, kGraceMs + 2000) << "SIGKILL came far after the grace";
  }
  EXPECT_NE(result.summary.find("rank 2 failed first: exit 20 (timeout) after"), std::string::npos)
      << result.summary;
  EXPECT_NE(result.summary.find("stopped 3 others"), std::string::npos) << result.summary;
}

TEST(Launch, RanksThatHonourSigtermStopWithoutWaitingForTheGrace) {
  ScratchDir dir;
  LaunchOptions options = sh_job(
      dir, 3,
      "if [ \"$RANK\" = 0 ]; then wait_ready 2; exit 3; fi; "
      "touch \"$LOCKSTEP_JOB_DIR/ready-$RANK\"; sleep 100");
  options.grace_ms = 15000;
  const LaunchResult result = launch(options);

  EXPECT_EQ(result.first_failed_rank, 0);
  EXPECT_EQ(result.exit_code, 3);
  for (int rank : {1, 2}) {
    EXPECT_EQ(result.ranks[static_cast<std::size_t>(rank)].end, RankStatus::End::kSignaled);
    EXPECT_EQ(result.ranks[static_cast<std::size_t>(rank)].code, SIGTERM);
  }
  EXPECT_LT(result.wall_ms, 10000) << "the job waited for the grace instead of the ranks";
  EXPECT_NE(result.summary.find("rank 0 failed first: exit 3 after"), std::string::npos)
      << result.summary;
  EXPECT_NE(result.summary.find("stopped 2 others"), std::string::npos) << result.summary;
}

// Rank 0 exits peer_failure at once, as a rank does that sees its peer's
// poison before the poisoning rank is reaped; rank 1 ends with its own error
// when the stop reaches it. The job's exit is rank 1's, not the witness's.
TEST(Launch, JobExitComesFromTheCauseNotFromTheFirstFollowerReaped) {
  ScratchDir dir;
  const LaunchResult result = launch_witness_job(dir, 21, "exit 42");

  EXPECT_EQ(result.end, LaunchEnd::kRankFailed);
  EXPECT_EQ(result.first_failed_rank, 0);
  EXPECT_EQ(result.cause_rank, 1);
  EXPECT_EQ(result.exit_code, 42);
  EXPECT_EQ(result.ranks[2].end, RankStatus::End::kSignaled) << "rank 2 only followed the stop";
  EXPECT_NE(result.summary.find("rank 1 caused the failure: exit 42 (kv_lifecycle) after"), std::string::npos)
      << result.summary;
  EXPECT_NE(result.summary.find("(rank 0 failed first: exit 21 (peer_failure) after"),
            std::string::npos)
      << result.summary;
  const auto json = nlohmann::json::parse(read_file(dir.path() / "launch.json"));
  EXPECT_EQ(json.at("cause_rank"), 1);
  EXPECT_EQ(json.at("exit_code"), 42);
}

// A rank killed from outside (kill -9, the OOM killer) is reaped only after
// the stop began — a GPU process's exit waits for its context to be torn
// down — while a peer already failed on the connection it lost (backend,
// exit 23). The launcher sent the killed rank SIGTERM, never SIGKILL: it is
// the cause, and the job exits with its 128 + 9.
TEST(Launch, RankKilledFromOutsideWhileTheStopRunsIsTheCauseOverABackendWitness) {
  ScratchDir dir;
  const LaunchResult result = launch_witness_job(dir, 23, "kill -9 $$");

  EXPECT_EQ(result.end, LaunchEnd::kRankFailed);
  EXPECT_EQ(result.first_failed_rank, 0);
  EXPECT_EQ(result.cause_rank, 1);
  EXPECT_EQ(result.exit_code, 128 + SIGKILL);
  const RankStatus& killed = result.ranks[1];
  EXPECT_EQ(killed.end, RankStatus::End::kSignaled);
  EXPECT_EQ(killed.code, SIGKILL);
  EXPECT_TRUE(killed.stopped_by_launcher);
  EXPECT_FALSE(killed.killed_by_launcher) << "the launcher's grace never ran out";
  EXPECT_EQ(result.ranks[2].code, SIGTERM) << "rank 2 only followed the stop";
  EXPECT_NE(result.summary.find("rank 1 caused the failure: signal 9 (SIGKILL) after"), std::string::npos)
      << result.summary;
  EXPECT_LT(result.wall_ms, 10000) << "the job waited for the grace";
}

TEST(Launch, RankKilledBySignalReportsSignalAndExitCode128Plus) {
  ScratchDir dir;
  LaunchOptions options = sh_job(
      dir, 2, "if [ \"$RANK\" = 1 ]; then kill -SEGV $$; fi; sleep 100");
  options.grace_ms = 1000;
  const LaunchResult result = launch(options);

  EXPECT_EQ(result.first_failed_rank, 1);
  EXPECT_EQ(result.ranks[1].end, RankStatus::End::kSignaled);
  EXPECT_EQ(result.ranks[1].code, SIGSEGV);
  EXPECT_EQ(result.exit_code, 128 + SIGSEGV);
  EXPECT_NE(result.summary.find("rank 1 failed first: signal 11 (SIGSEGV)"), std::string::npos)
      << result.summary;
}

// Warm recovery at the launcher: rank 1 dies by a signal in generation 0;
// the launcher begins generation 1 and starts only rank 1 again, with
// LOCKSTEP_GENERATION=1; rank 0 keeps its process.
TEST(Launch, UnderRestartOnlyTheDeadRankStartsAgainIntoTheNextGeneration) {
  ScratchDir dir;
  LaunchOptions options = sh_job(
      dir, 2,
      "echo \"$$\" >> \"$LOCKSTEP_JOB_DIR/pids-$RANK\"; "
      "if [ \"$RANK\" = 1 ] && [ \"$LOCKSTEP_GENERATION\" = 0 ]; then kill -9 $$; fi; "
      "if [ \"$RANK\" = 0 ]; then i=0; while [ \"$(wc -l < \"$LOCKSTEP_JOB_DIR/pids-1\")\" -lt 2 ]; do "
      "i=$((i+1)); [ $i -gt 400 ] && exit 98; sleep 0.025; done; fi");
  options.on_fault = OnFault::kRestart;
  const LaunchResult result = launch(options);
  EXPECT_EQ(result.exit_code, 0) << result.summary;
  ASSERT_EQ(result.recoveries.size(), 1u);
  EXPECT_EQ(result.recoveries[0].generation, 1u);
  EXPECT_EQ(result.recoveries[0].restarted_ranks, std::vector<int>{1});
  EXPECT_NE(result.recoveries[0].cause.find("rank 1 killed by signal 9"), std::string::npos);
  EXPECT_EQ(split_words(read_file(dir.path() / "pids-0")).size(), 1u);  // rank 0 never restarted
  EXPECT_EQ(split_words(read_file(dir.path() / "pids-1")).size(), 2u);
}

// A rank that dies again at once is not restarted forever: past the budget
// the job ends as under --on-fault exit, with the rank's own exit.
TEST(Launch, UnderRestartARankThatKeepsDyingEndsTheJobAfterTheBudget) {
  ScratchDir dir;
  LaunchOptions options = sh_job(dir, 2, "if [ \"$RANK\" = 1 ]; then kill -9 $$; fi; sleep 10");
  options.on_fault = OnFault::kRestart;
  options.restarts_max = 2;
  const LaunchResult result = launch(options);
  EXPECT_EQ(result.exit_code, 128 + 9) << result.summary;
  EXPECT_EQ(result.recoveries.size(), 2u);
  EXPECT_EQ(result.end, LaunchEnd::kRankFailed);
}

// A deterministic failure (here: exit 33, a ledger divergence) is not restarted.
TEST(Launch, UnderRestartADeterministicFailureEndsTheJob) {
  ScratchDir dir;
  LaunchOptions options = sh_job(dir, 2, "if [ \"$RANK\" = 1 ]; then exit 33; fi; sleep 10");
  options.on_fault = OnFault::kRestart;
  const LaunchResult result = launch(options);
  EXPECT_EQ(result.exit_code, 33) << result.summary;
  EXPECT_TRUE(result.recoveries.empty());
}

TEST(Launch, OverallTimeoutStopsEveryRank) {
  ScratchDir dir;
  LaunchOptions options = sh_job(dir, 3, "sleep 100");
  options.timeout_ms = 300;
  options.grace_ms = 1000;
  const LaunchResult result = launch(options);

  EXPECT_EQ(result.end, LaunchEnd::kTimeout);
  EXPECT_EQ(result.exit_code, exit_code_for(ErrorCode::kTimeout));
  EXPECT_EQ(result.first_failed_rank, -1);
  EXPECT_EQ(result.stopped_ranks, 3);
  EXPECT_GE(result.wall_ms, 300);
  EXPECT_LT(result.wall_ms, 300 + 1000 + 2000);
  for (const RankStatus& status : result.ranks) {
    EXPECT_TRUE(status.stopped_by_launcher);
    EXPECT_EQ(status.end, RankStatus::End::kSignaled);
  }
  EXPECT_NE(result.summary.find("job timed out"), std::string::npos) << result.summary;
}

// A rank that exits 0 starts the end bound: a rank still running after it
// hangs at the end (a teardown, a destroy) and is named; ranks that end
// apart but within the bound succeed.
TEST(Launch, ARankStillRunningPastTheEndBoundIsAHangAtTheEnd) {
  ScratchDir dir;
  LaunchOptions options = sh_job(dir, 3, "[ \"$RANK\" = 0 ] && exit 0; sleep 100");
  options.end_bound_ms = 300;
  options.grace_ms = 1000;
  const LaunchResult result = launch(options);

  EXPECT_EQ(result.end, LaunchEnd::kTimeout);
  EXPECT_EQ(result.exit_code, exit_code_for(ErrorCode::kTimeout));
  EXPECT_EQ(result.first_failed_rank, 1);
  EXPECT_EQ(result.stopped_ranks, 2);
  EXPECT_FALSE(result.ranks[0].stopped_by_launcher);
  EXPECT_EQ(result.ranks[0].code, 0);
  EXPECT_LT(result.wall_ms, kJobTimeoutMs);
  EXPECT_NE(result.summary.find("rank 1 hung at the end of the job"), std::string::npos) << result.summary;

  ScratchDir apart;
  LaunchOptions within = sh_job(apart, 2, "[ \"$RANK\" = 0 ] && exit 0; sleep 0.2");
  within.end_bound_ms = 10000;
  EXPECT_EQ(launch(within).end, LaunchEnd::kSuccess);
}

TEST(Launch, FailureListsDumpsAndCallsOnFailureOnceAfterEveryRankIsGone) {
  ScratchDir dir;
  LaunchOptions options = sh_job(
      dir, 3,
      "echo $$ > \"$LOCKSTEP_JOB_DIR/pid-$RANK\"; "
      "echo '{}' > \"$LOCKSTEP_JOB_DIR/dumps/rank-$RANK.json\"; "
      "if [ \"$RANK\" = 1 ]; then wait_ready 2; exit 21; fi; "
      "touch \"$LOCKSTEP_JOB_DIR/ready-$RANK\"; sleep 100");
  int calls = 0;
  bool ranks_gone_at_call = false;
  options.on_failure = [&](const LaunchResult& result) {
    ++calls;
    ranks_gone_at_call = true;
    for (pid_t pid : read_pids(dir.path(), "pid-")) ranks_gone_at_call &= process_gone(pid);
    EXPECT_EQ(result.first_failed_rank, 1);
  };
  const LaunchResult result = launch(options);

  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(ranks_gone_at_call);
  EXPECT_EQ(result.exit_code, 21);
  const std::vector<std::string> expected = {dir.str() + "/dumps/rank-0.json",
                                             dir.str() + "/dumps/rank-1.json",
                                             dir.str() + "/dumps/rank-2.json"};
  EXPECT_EQ(result.dump_files, expected);
  const auto json = nlohmann::json::parse(read_file(dir.path() / "launch.json"));
  EXPECT_EQ(json.at("dump_files").get<std::vector<std::string>>(), expected);
  EXPECT_EQ(json.at("first_failed_rank"), 1);
  EXPECT_EQ(json.at("cause_rank"), 1) << "every other rank only followed the stop";
  EXPECT_EQ(json.at("end"), "rank_failed");
}

TEST(Launch, SuccessDoesNotCallOnFailure) {
  ScratchDir dir;
  LaunchOptions options = sh_job(dir, 2, "true");
  int calls = 0;
  options.on_failure = [&](const LaunchResult&) { ++calls; };
  EXPECT_EQ(launch(options).exit_code, 0);
  EXPECT_EQ(calls, 0);
}

TEST(Launch, SharedMemoryOfTheJobIsRemovedEvenWhenRanksAreKilled) {
  ScratchDir dir;
  // Each rank leaves a segment named like a control ring, then dies by SIGKILL.
  LaunchOptions options = sh_job(dir, 2, "touch /dev/shm/lockstep-$LOCKSTEP_JOB_ID-ring$RANK; kill -KILL $$");
  options.job_id = "job-shm-cleanup-test";
  const LaunchResult result = launch(options);
  EXPECT_NE(result.exit_code, 0);
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_FALSE(std::filesystem::exists("/dev/shm/lockstep-job-shm-cleanup-test-ring" + std::to_string(rank)));
  }
}

TEST(Launch, ChildLeftBehindByARankDiesWithTheRank) {
  ScratchDir dir;
  LaunchOptions options =
      sh_job(dir, 2, "sleep 100 & echo $! > \"$LOCKSTEP_JOB_DIR/child-$RANK\"; exit 0");
  const LaunchResult result = launch(options);
  EXPECT_EQ(result.exit_code, 0);
  const std::vector<pid_t> children = read_pids(dir.path(), "child-");
  ASSERT_EQ(children.size(), 2u);
  for (pid_t pid : children) {
    EXPECT_TRUE(wait_until([pid] { return process_gone(pid); }, 2000ms)) << "pid " << pid;
  }
}

TEST(Launch, LongLinesAreSplitAtTheBoundAndOutputIsKeptPerRank) {
  ScratchDir dir;
  constexpr std::size_t kLineBytes = 2 * kLaunchLineBytesMax + 17;
  LaunchOptions options = sh_job(
      dir, 2, "head -c " + std::to_string(kLineBytes) + " /dev/zero | tr '\\0' a; echo; "
              "printf 'last line without newline'");
  ASSERT_EQ(launch(options).exit_code, 0);
  for (int rank : {0, 1}) {
    std::istringstream log(read_file(dir.path() / "logs" / ("rank-" + std::to_string(rank) + ".log")));
    std::vector<std::string> lines;
    for (std::string line; std::getline(log, line);) lines.push_back(line);
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_EQ(lines[0], std::string(kLaunchLineBytesMax, 'a'));
    EXPECT_EQ(lines[1], std::string(kLaunchLineBytesMax, 'a'));
    EXPECT_EQ(lines[2], std::string(17, 'a'));
    EXPECT_EQ(lines[3], "last line without newline");
  }
}

TEST(Launch, OutputWrittenRightBeforeExitIsDrainedCompletely) {
  ScratchDir dir;
  constexpr int kLines = 100000;
  LaunchOptions options = sh_job(dir, 2, "seq 1 " + std::to_string(kLines));
  ASSERT_EQ(launch(options).exit_code, 0);
  for (int rank : {0, 1}) {
    std::istringstream log(read_file(dir.path() / "logs" / ("rank-" + std::to_string(rank) + ".log")));
    int count = 0;
    std::string last;
    for (std::string line; std::getline(log, line); ++count) last = line;
    EXPECT_EQ(count, kLines) << "rank " << rank;
    EXPECT_EQ(last, std::to_string(kLines));
  }
}

TEST(Launch, CallerIgnoringSigchldStillGetsEveryExitStatus) {
  ScratchDir dir;
  struct sigaction ignore {};
  struct sigaction previous {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGCHLD, &ignore, &previous), 0);
  LaunchOptions options = sh_job(dir, 1, "exit 4");
  const LaunchResult result = launch(options);
  struct sigaction after {};
  ::sigaction(SIGCHLD, &previous, &after);
  EXPECT_EQ(after.sa_handler, SIG_IGN) << "the caller's disposition is restored";
  EXPECT_EQ(result.exit_code, 4);
  EXPECT_EQ(result.ranks[0].end, RankStatus::End::kExited);
}

TEST(Launch, MissingProgramIsRefusedBeforeAnyRankStarts) {
  ScratchDir dir;
  LaunchOptions options;
  options.nproc = 2;
  options.job_dir = (dir.path() / "job").string();
  options.argv = {"lockstep-no-such-program"};
  try {
    launch(options);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("lockstep-no-such-program"), std::string::npos);
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "job"));
}

}  // namespace
}  // namespace lockstep
