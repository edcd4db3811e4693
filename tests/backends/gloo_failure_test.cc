// The Gloo backend fails fast and never hangs: a killed or stopped peer, a
// rank that never connects, a mismatched tag and abort() all end in an Error
// within the call's timeout (plus a margin for process scheduling), and the
// backend refuses every later call.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <thread>
#include <vector>

#include "backends/outcome.h"
#include "backends/rank_job.h"
#include "support/multiprocess.h"

namespace lockstep::test {
namespace {

constexpr std::chrono::milliseconds kOpTimeout{2000};
// Scheduling slack on a loaded 2-core machine, on top of kOpTimeout.
constexpr std::int64_t kMarginMs = 1500;
constexpr std::chrono::milliseconds kWall{60000};
constexpr std::size_t kCount = 1024;

bool ended_in_time(const Outcome& outcome, std::chrono::milliseconds timeout) {
  return outcome.elapsed_ms < timeout.count() + kMarginMs;
}

// Reports the failing call's outcome, then what a later call got.
int report_failure_then_refusal(RankJob& job, const Outcome& failure) {
  const Outcome later = attempt([&] { job.world->barrier(kOpTimeout); });
  write_report(job.env.rank, failure.line() + "\n" + later.line() + "\n");
  return 0;
}

std::vector<Outcome> reports(const RanksResult& result, int rank) {
  std::istringstream in(read_report(result.job_dir, rank));
  std::vector<Outcome> outcomes;
  for (std::string line; std::getline(in, line);) outcomes.push_back(Outcome::parse(line));
  return outcomes;
}

TEST(GlooFailure, PeerKilledMidAllReduceFailsOthersWithinTimeout) {
  RanksOptions options;
  options.world_size = 3;
  options.wall_timeout = kWall;
  const RanksResult result = run_ranks(options, [](int rank) {
    RankJob job = join_world();
    std::vector<float> data(kCount, 1.0f);
    job.world->all_reduce(data.data(), kCount, DType::kF32, ReduceOp::kSum, kOpTimeout);
    if (rank == 2) raise(SIGKILL);
    const Outcome failure = attempt(
        [&] { job.world->all_reduce(data.data(), kCount, DType::kF32, ReduceOp::kSum, kOpTimeout); });
    return report_failure_then_refusal(job, failure);
  });
  ASSERT_FALSE(result.hung) << result.describe();
  EXPECT_TRUE(result.ranks[2].signaled && result.ranks[2].code == SIGKILL) << result.describe();
  int peer_failures = 0;
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(result.ranks[static_cast<std::size_t>(rank)].ok()) << result.describe();
    const std::vector<Outcome> seen = reports(result, rank);
    ASSERT_EQ(seen.size(), 2u) << "rank " << rank;
    EXPECT_TRUE(seen[0].code == "peer_failure" || seen[0].code == "timeout") << seen[0].line();
    EXPECT_TRUE(ended_in_time(seen[0], kOpTimeout)) << seen[0].line();
    EXPECT_NE(seen[0].message.find("group 'world'"), std::string::npos) << seen[0].message;
    EXPECT_NE(seen[0].message.find("all_reduce"), std::string::npos) << seen[0].message;
    EXPECT_EQ(seen[1].code, "aborted") << seen[1].line();
    EXPECT_LT(seen[1].elapsed_ms, kMarginMs) << "a broken backend refuses at once";
    peer_failures += seen[0].code == "peer_failure";
  }
  EXPECT_GE(peer_failures, 1) << "a neighbour of the killed rank sees its socket close";
}

TEST(GlooFailure, StoppedPeerMakesOthersTimeOut) {
  RanksOptions options;
  options.world_size = 3;
  options.wall_timeout = kWall;
  const RanksResult result = run_ranks(options, [](int rank) {
    RankJob job = join_world();
    const std::string pid_file = job.env.job_dir + "/stopped.pid";
    if (rank == 2) {
      std::ofstream(pid_file) << getpid();
      job.world->barrier(kOpTimeout);  // the others now know the pid file exists
      raise(SIGSTOP);
      return 0;
    }
    job.world->barrier(kOpTimeout);
    std::vector<double> data(kCount, 1.0);
    const Outcome failure = attempt(
        [&] { job.world->all_reduce(data.data(), kCount, DType::kF64, ReduceOp::kMax, kOpTimeout); });
    // The stopped rank cannot end itself; rank 0 ends it for the test.
    if (rank == 0) {
      pid_t stopped = 0;
      std::ifstream(pid_file) >> stopped;
      require(stopped > 0 && kill(stopped, SIGKILL) == 0, "kill the stopped rank");
    }
    return report_failure_then_refusal(job, failure);
  });
  ASSERT_FALSE(result.hung) << result.describe();
  int timeouts = 0;
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(result.ranks[static_cast<std::size_t>(rank)].ok()) << result.describe();
    const std::vector<Outcome> seen = reports(result, rank);
    ASSERT_EQ(seen.size(), 2u) << "rank " << rank;
    EXPECT_TRUE(seen[0].code == "timeout" || seen[0].code == "peer_failure") << seen[0].line();
    EXPECT_TRUE(ended_in_time(seen[0], kOpTimeout)) << seen[0].line();
    EXPECT_EQ(seen[1].code, "aborted") << seen[1].line();
    timeouts += seen[0].code == "timeout";
  }
  EXPECT_GE(timeouts, 1) << "a silent (stopped) peer surfaces as a timeout";
}

TEST(GlooFailure, ConnectTimeoutNamesGroupAndMissingRank) {
  constexpr std::chrono::milliseconds kConnectTimeout{1500};
  RanksOptions options;
  options.world_size = 3;
  options.wall_timeout = kWall;
  const RanksResult result = run_ranks(options, [&](int rank) {
    if (rank == 2) return 0;  // never shows up
    const Outcome failure = attempt([&] { join_world(kConnectTimeout); });
    write_report(rank, failure.line() + "\n");
    return 0;
  });
  ASSERT_TRUE(result.all_ok()) << result.describe();
  for (int rank = 0; rank < 2; ++rank) {
    const std::vector<Outcome> seen = reports(result, rank);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].code, "timeout") << seen[0].line();
    EXPECT_TRUE(ended_in_time(seen[0], kConnectTimeout)) << seen[0].line();
    EXPECT_NE(seen[0].message.find("group 'world'"), std::string::npos) << seen[0].message;
    EXPECT_NE(seen[0].message.find("never arrived: [2]"), std::string::npos) << seen[0].message;
  }
}

TEST(GlooFailure, MismatchedTagTimesOutTheReceiver) {
  constexpr std::chrono::milliseconds kShort{1000};
  RanksOptions options;
  options.world_size = 2;
  options.wall_timeout = kWall;
  const RanksResult result = run_ranks(options, [&](int rank) {
    RankJob job = join_world();
    std::vector<std::uint8_t> data(64, 0x5A);
    // The sender waits longer, so the receiver's timeout is what ends the pair.
    const Outcome failure = attempt([&] {
      if (rank == 0) job.world->send(data.data(), data.size(), 1, 1, 4 * kShort);
      else job.world->recv(data.data(), data.size(), 0, 2, kShort);
    });
    return report_failure_then_refusal(job, failure);
  });
  ASSERT_TRUE(result.all_ok()) << result.describe();
  const std::vector<Outcome> receiver = reports(result, 1);
  ASSERT_EQ(receiver.size(), 2u);
  EXPECT_EQ(receiver[0].code, "timeout") << receiver[0].line();
  EXPECT_TRUE(ended_in_time(receiver[0], kShort)) << receiver[0].line();
  EXPECT_NE(receiver[0].message.find("recv"), std::string::npos) << receiver[0].message;
  EXPECT_EQ(receiver[1].code, "aborted");
}

TEST(GlooFailure, AbortAndInvalidArgumentsBreakTheBackend) {
  RanksOptions options;
  options.world_size = 2;
  options.wall_timeout = kWall;
  const RanksResult result = run_ranks(options, [](int rank) {
    RankJob job = join_world();
    job.world->barrier(kOpTimeout);
    float value = 1.0f;
    const Outcome failure = attempt([&] {
      if (rank == 0) {
        job.world->abort();
        job.world->abort();  // a second abort is a no-op
        job.world->all_reduce(&value, 1, DType::kF32, ReduceOp::kSum, kOpTimeout);
      } else {
        job.world->broadcast(&value, 1, DType::kF32, /*root=*/5, kOpTimeout);
      }
    });
    return report_failure_then_refusal(job, failure);
  });
  ASSERT_TRUE(result.all_ok()) << result.describe();
  const std::vector<Outcome> aborted = reports(result, 0);
  ASSERT_EQ(aborted.size(), 2u);
  EXPECT_EQ(aborted[0].code, "aborted") << aborted[0].line();
  EXPECT_LT(aborted[0].elapsed_ms, kMarginMs) << "an aborted backend refuses at once";
  EXPECT_EQ(aborted[1].code, "aborted");
  const std::vector<Outcome> invalid = reports(result, 1);
  ASSERT_EQ(invalid.size(), 2u);
  EXPECT_EQ(invalid[0].code, "invalid_argument") << invalid[0].line();
  EXPECT_NE(invalid[0].message.find("root 5"), std::string::npos) << invalid[0].message;
  EXPECT_EQ(invalid[1].code, "aborted");
}

// abort() from another thread ends a recv in flight at once (whether it lands
// before or during the wait, the recv ends with kAborted long before its
// timeout).
TEST(GlooFailure, AbortEndsARecvInFlight) {
  constexpr std::chrono::milliseconds kLong{20000};
  RanksOptions options;
  options.world_size = 2;
  options.wall_timeout = kWall;
  const RanksResult result = run_ranks(options, [&](int rank) {
    RankJob job = join_world();
    job.world->barrier(kOpTimeout);
    if (rank == 0) {
      // Holds the pair open (and sends nothing) until rank 1 is done.
      const Outcome idle = attempt([&] { job.world->barrier(kLong); });
      return idle.code == "peer_failure" || idle.code == "none" ? 0 : 5;
    }
    std::thread aborter([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the recv start
      job.world->abort();
    });
    std::uint8_t byte = 0;
    const Outcome failure = attempt([&] { job.world->recv(&byte, 1, 0, 3, kLong); });
    aborter.join();
    return report_failure_then_refusal(job, failure);
  });
  ASSERT_TRUE(result.all_ok()) << result.describe();
  const std::vector<Outcome> seen = reports(result, 1);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].code, "aborted") << seen[0].line();
  EXPECT_LT(seen[0].elapsed_ms, kMarginMs) << seen[0].line();
  EXPECT_EQ(seen[1].code, "aborted");
}

}  // namespace
}  // namespace lockstep::test
