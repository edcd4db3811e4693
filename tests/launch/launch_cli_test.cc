// `lockstep launch` as a real child process ($LOCKSTEP_BIN): what happens to
// the ranks when the launcher is signalled or killed (break-it C3), and what
// the command prints and returns. Ranks record their pids (and their own
// children's) in files; the tests then check every recorded pid by /proc.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "launch/process_util.h"
#include "support/multiprocess.h"
#include "support/redis_server.h"

namespace lockstep {
namespace {

using namespace std::chrono_literals;
using launch_test::count_files;
using launch_test::process_gone;
using launch_test::read_file;
using launch_test::read_pids;
using launch_test::ScratchDir;
using launch_test::wait_child;
using launch_test::wait_until;

// Bounds of the waits below; the ranks and launcher normally take a few ms.
constexpr auto kStartBound = 10s;
constexpr auto kExitBound = 10s;
constexpr auto kGoneBound = 5s;

// Each rank records its shell's pid and a background child's pid, then waits
// on the child. Rank 1 also ignores SIGTERM, so only SIGKILL removes it.
constexpr const char* kRecordingRank =
    "D=\"$LOCKSTEP_JOB_DIR\"; [ \"$RANK\" = 1 ] && trap '' TERM; "
    "sleep 100 & echo $! > \"$D/child-$RANK\"; echo $$ > \"$D/pid-$RANK\"; wait";

// Starts `lockstep launch ARGS` with stdout/stderr into files of `dir`.
pid_t start_launcher(const ScratchDir& dir, const std::vector<std::string>& args) {
  const char* bin = std::getenv("LOCKSTEP_BIN");
  EXPECT_NE(bin, nullptr) << "LOCKSTEP_BIN is set by lockstep_test()";
  if (bin == nullptr) return -1;
  std::vector<std::string> argv = {bin, "launch"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c_argv;
  for (std::string& arg : argv) c_argv.push_back(arg.data());
  c_argv.push_back(nullptr);
  const std::string out_path = dir.str() + "/launcher.out";
  const std::string err_path = dir.str() + "/launcher.err";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) ::_exit(126);
    ::execv(c_argv[0], c_argv.data());
    ::_exit(127);
  }
  return pid;
}

std::vector<std::string> job_args(const ScratchDir& dir, int nproc, const std::string& grace_ms,
                                  const std::string& script) {
  return {"--nproc", std::to_string(nproc), "--job-dir", dir.str() + "/job", "--grace-ms",
          grace_ms, "--timeout-s", "30", "--", "/bin/sh", "-c", script};
}

// Waits until every rank has recorded both pids; returns them all.
std::vector<pid_t> wait_for_recorded_pids(const ScratchDir& dir, int nproc) {
  const auto job = dir.path() / "job";
  const bool recorded = wait_until(
      [&] {
        return std::filesystem::exists(job) &&
               count_files(job, "pid-") + count_files(job, "child-") ==
                   2 * static_cast<std::size_t>(nproc);
      },
      kStartBound);
  EXPECT_TRUE(recorded) << "ranks did not start";
  // A file exists before its pid is written; wait for the content too.
  std::vector<pid_t> pids;
  wait_until(
      [&] {
        pids = read_pids(job, "pid-");
        const std::vector<pid_t> children = read_pids(job, "child-");
        pids.insert(pids.end(), children.begin(), children.end());
        return pids.size() == 2 * static_cast<std::size_t>(nproc);
      },
      kStartBound);
  EXPECT_EQ(pids.size(), 2 * static_cast<std::size_t>(nproc));
  return pids;
}

void expect_all_gone(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    EXPECT_TRUE(wait_until([pid] { return process_gone(pid); }, kGoneBound))
        << "pid " << pid << " survived the launcher";
  }
}

TEST(LaunchCli, C3_SigtermToLauncherStopsEveryRankAndTheirChildren) {
  ScratchDir dir;
  const pid_t launcher = start_launcher(dir, job_args(dir, 3, "300", kRecordingRank));
  ASSERT_GT(launcher, 0);
  const std::vector<pid_t> pids = wait_for_recorded_pids(dir, 3);
  ASSERT_EQ(::kill(launcher, SIGTERM), 0);
  const auto status = wait_child(launcher, kExitBound);
  ASSERT_TRUE(status.has_value()) << "launcher hung after SIGTERM";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 128 + SIGTERM);
  expect_all_gone(pids);
  const std::string err = read_file(dir.path() / "launcher.err");
  EXPECT_NE(err.find("lockstep launch: launcher got signal 15 (SIGTERM)"), std::string::npos) << err;
  EXPECT_NE(err.find("stopped 3 ranks"), std::string::npos) << err;
  EXPECT_NE(read_file(dir.path() / "job" / "launch.json").find("\"launcher_signaled\""),
            std::string::npos);
}

TEST(LaunchCli, SigkillToLauncherLeavesNoOrphan) {
  ScratchDir dir;
  const pid_t launcher = start_launcher(dir, job_args(dir, 3, "300", kRecordingRank));
  ASSERT_GT(launcher, 0);
  const std::vector<pid_t> pids = wait_for_recorded_pids(dir, 3);
  ASSERT_EQ(::kill(launcher, SIGKILL), 0);
  const auto status = wait_child(launcher, kExitBound);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFSIGNALED(*status));
  // The ranks die by PR_SET_PDEATHSIG; their children only through the
  // sentinel, since a parent-death signal reaches one generation.
  expect_all_gone(pids);
}

TEST(LaunchCli, SecondSigtermSkipsTheGrace) {
  ScratchDir dir;
  // Every rank survives SIGTERM (the trap only notes it), so only the
  // escalation to SIGKILL can end them; the grace is far beyond the bounds.
  const std::string script =
      "D=\"$LOCKSTEP_JOB_DIR\"; trap 'touch \"$D/got-term-$RANK\"' TERM; "
      "echo $$ > \"$D/pid-$RANK\"; echo $$ > \"$D/child-$RANK\"; "
      "while true; do sleep 100 & wait; done";
  const pid_t launcher = start_launcher(dir, job_args(dir, 2, "60000", script));
  ASSERT_GT(launcher, 0);
  const std::vector<pid_t> pids = wait_for_recorded_pids(dir, 2);
  ASSERT_EQ(::kill(launcher, SIGTERM), 0);
  EXPECT_TRUE(wait_until([&] { return count_files(dir.path() / "job", "got-term-") == 2; },
                         kStartBound));
  ASSERT_EQ(::kill(launcher, SIGINT), 0);
  const auto status = wait_child(launcher, kExitBound);
  ASSERT_TRUE(status.has_value()) << "launcher waited for the 60 s grace";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 128 + SIGTERM) << "the first signal is the one reported";
  expect_all_gone(pids);
}

TEST(LaunchCli, FailedRankSetsExitCodeSummaryAndPrefixedOutput) {
  ScratchDir dir;
  const std::string script =
      "D=\"$LOCKSTEP_JOB_DIR\"; echo \"out of $RANK\"; echo \"err of $RANK\" >&2; "
      "if [ \"$RANK\" = 1 ]; then i=0; until [ -e \"$D/ready-0\" ] || [ $i -gt 400 ]; "
      "do i=$((i+1)); sleep 0.025; done; exit 20; fi; touch \"$D/ready-0\"; exec sleep 100";
  const pid_t launcher = start_launcher(dir, job_args(dir, 2, "2000", script));
  ASSERT_GT(launcher, 0);
  const auto status = wait_child(launcher, kExitBound);
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 20);
  const std::string out = read_file(dir.path() / "launcher.out");
  const std::string err = read_file(dir.path() / "launcher.err");
  EXPECT_NE(out.find("[rank 0] out of 0\n"), std::string::npos) << out;
  EXPECT_NE(out.find("[rank 1] out of 1\n"), std::string::npos) << out;
  EXPECT_NE(err.find("[rank 1] err of 1\n"), std::string::npos) << err;
  EXPECT_EQ(out.find("err of"), std::string::npos) << "stderr lines belong on stderr";
  EXPECT_NE(err.find("lockstep launch: rank 1 failed first: exit 20 (timeout) after "),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("; stopped 1 other\n"), std::string::npos) << err;
}

TEST(LaunchCli, AllRanksSucceedExitsZeroQuietly) {
  ScratchDir dir;
  const pid_t launcher = start_launcher(dir, job_args(dir, 4, "2000", "test \"$RANK\" -lt 4"));
  ASSERT_GT(launcher, 0);
  const auto status = wait_child(launcher, kExitBound);
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_EQ(read_file(dir.path() / "launcher.err"), "");
}


// Two "machines" on this host: one launcher each, sharing a real redis-server.
class TwoMachines {
 public:
  TwoMachines() : redis_(test::pick_free_tcp_port()) {}

  // Starts both launchers with `script` as every rank; false when Redis is missing.
  bool start(const std::string& job_id, const std::string& script) {
    if (!redis_.started() || !redis_.wait_ready()) return false;
    for (int node = 0; node < 2; ++node) {
      launchers_[node] = start_launcher(
          dirs_[node], {"--nnodes", "2", "--node-rank", std::to_string(node), "--nproc", "2", "--store",
                        redis_.url(), "--job-id", job_id, "--job-token", "secret-0123456789", "--master-addr",
                        "127.0.0.1", "--job-dir", dirs_[node].str() + "/job", "--grace-ms", "2000", "--timeout-s",
                        "60", "--", "/bin/sh", "-c", script});
    }
    return launchers_[0] > 0 && launchers_[1] > 0;
  }
  // The launcher's exit status, or -1 when it did not exit within the bound.
  int exit_status(int node) {
    const auto status = wait_child(launchers_[node], kExitBound);
    return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  }
  const ScratchDir& dir(int node) const { return dirs_[node]; }

 private:
  test::RedisServer redis_;
  ScratchDir dirs_[2];
  pid_t launchers_[2] = {-1, -1};
};

TEST(LaunchCli, TwoMachinesRendezvousOverRedisLikeTorchrun) {
  ASSERT_EQ(access(test::kRedisServer, X_OK), 0) << "apt-get install redis-server (CI installs it)";
  TwoMachines machines;
  ASSERT_TRUE(machines.start("two-machines-ok",
                             "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $GROUP_RANK $ROLE_RANK "
                             "$MASTER_ADDR $MASTER_PORT $TORCHELASTIC_RUN_ID $LOCKSTEP_GENERATION\" > "
                             "\"$LOCKSTEP_JOB_DIR/env-$RANK\""));
  EXPECT_EQ(machines.exit_status(0), 0) << read_file(machines.dir(0).path() / "launcher.err");
  EXPECT_EQ(machines.exit_status(1), 0) << read_file(machines.dir(1).path() / "launcher.err");
  std::string port;
  for (int rank = 0; rank < 4; ++rank) {
    const int node = rank / 2;
    const std::string env = read_file(machines.dir(node).path() / "job" / ("env-" + std::to_string(rank)));
    std::istringstream words(env);
    std::string r, world, local, local_world, group, role, addr, this_port, run_id, generation;
    words >> r >> world >> local >> local_world >> group >> role >> addr >> this_port >> run_id >> generation;
    EXPECT_EQ(r, std::to_string(rank)) << env;
    EXPECT_EQ(world, "4");
    EXPECT_EQ(local, std::to_string(rank % 2));
    EXPECT_EQ(local_world, "2");
    EXPECT_EQ(group, std::to_string(node));
    EXPECT_EQ(role, r);
    EXPECT_EQ(addr, "127.0.0.1");
    EXPECT_GT(std::atoi(this_port.c_str()), 0) << env;
    if (rank == 0) port = this_port;
    EXPECT_EQ(this_port, port) << "node 0 publishes one MASTER_PORT for every machine";
    EXPECT_EQ(run_id, "two-machines-ok");
    EXPECT_EQ(generation, "0");
  }
}

TEST(LaunchCli, AFailureOnOneMachineStopsEveryMachine) {
  ASSERT_EQ(access(test::kRedisServer, X_OK), 0) << "apt-get install redis-server (CI installs it)";
  TwoMachines machines;
  // Rank 3 (machine 1) fails; every other rank would sleep far past the bound.
  ASSERT_TRUE(machines.start("two-machines-fail", "if [ \"$RANK\" = 3 ]; then exit 7; fi; exec sleep 100"));
  EXPECT_EQ(machines.exit_status(1), 7);
  EXPECT_EQ(machines.exit_status(0), 21) << "the other machine ends with peer_failure";
  const std::string err = read_file(machines.dir(0).path() / "launcher.err");
  EXPECT_NE(err.find("another machine failed (node 1: rank 3 failed)"), std::string::npos) << err;
}

}  // namespace
}  // namespace lockstep
