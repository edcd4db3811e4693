// The fatal path in real processes: dump, poison, abort, bounded _exit.
#include "lockstep/fatal.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "guard/guarded_rank.h"
#include "lockstep/error.h"
#include "lockstep/file_store.h"
#include "lockstep/poison.h"
#include "support/multiprocess.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
using test::GuardedRank;
using test::quick_watchdog;
using test::RanksOptions;
using test::run_ranks;

constexpr milliseconds kSteady{300};
constexpr milliseconds kHardExit{600};
// Slack for process start-up and scheduling on a loaded 2-core CI host.
constexpr milliseconds kSlack{1000};

nlohmann::json read_dump(const std::string& job_dir, int rank) {
  std::ifstream in(dump_path(job_dir, rank));
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, false);
}

RanksOptions ranks(int world_size) {
  RanksOptions options;
  options.world_size = world_size;
  options.wall_timeout = milliseconds(15'000);
  return options;
}

TEST(FatalPath, DeadlineExpiryDumpsPoisonsAndStopsEveryPeer) {
  const auto result = run_ranks(ranks(3), [](int rank) -> int {
    GuardedRank g(rank, 3, quick_watchdog(kSteady), kHardExit);
    if (rank == 1) g.watchdog.arm("all_reduce", "mesh", 41);  // and never completes
    g.idle();
  });
  ASSERT_FALSE(result.hung) << result.describe();
  EXPECT_EQ(result.ranks[1].code, exit_code_for(ErrorCode::kTimeout)) << result.describe();
  EXPECT_EQ(result.ranks[0].code, exit_code_for(ErrorCode::kPeerFailure)) << result.describe();
  EXPECT_EQ(result.ranks[2].code, exit_code_for(ErrorCode::kPeerFailure)) << result.describe();
  for (const auto& r : result.ranks) {
    EXPECT_LE(r.ended_after, kSteady + kSlack) << result.describe();
    const auto dump = read_dump(result.job_dir, r.rank);
    ASSERT_TRUE(dump.is_object()) << "rank " << r.rank;
    EXPECT_EQ(dump["rank"], r.rank);
  }
  const auto culprit = read_dump(result.job_dir, 1);
  EXPECT_EQ(culprit["reason"]["kind"], "timeout");
  EXPECT_EQ(culprit["reason"]["code"], "timeout");
  ASSERT_EQ(culprit["armed"].size(), 1u);
  EXPECT_EQ(culprit["armed"][0]["what"], "all_reduce");
  EXPECT_EQ(culprit["armed"][0]["group"], "mesh");
  const auto peer = read_dump(result.job_dir, 0);
  EXPECT_EQ(peer["reason"]["code"], "peer_failure");
  EXPECT_NE(peer["reason"]["message"].get<std::string>().find("rank 1"), std::string::npos);

  // Only the culprit raised a mark: a poisoned peer does not echo it.
  FileStore store(result.job_dir + "/store");
  EXPECT_TRUE(store.check({poison_key(1)}));
  EXPECT_FALSE(store.check({poison_key(0)}));
  EXPECT_FALSE(store.check({poison_key(2)}));
}

TEST(FatalPath, HangingAbortStillEndsAtTheHardDeadline) {
  const auto result = run_ranks(ranks(1), [](int) -> int {
    GuardedRank g(0, 1, quick_watchdog(kSteady), kHardExit);
    std::atomic<bool> never{false};
    g.fatal.set_abort_action([&never] {
      while (!never.load()) std::this_thread::sleep_for(milliseconds(10));
    });
    g.fatal.fail(Error(ErrorCode::kBackend, "injected C5"));
    return 0;  // not reached: the hard deadline ends the process
  });
  ASSERT_FALSE(result.hung) << result.describe();
  EXPECT_EQ(result.ranks[0].code, kExitHardDeadline) << result.describe();
  EXPECT_GE(result.ranks[0].ended_after, kHardExit);
  EXPECT_LE(result.ranks[0].ended_after, kHardExit + kSlack);
  // The dump came before the abort: it is there although abort never returned.
  EXPECT_EQ(read_dump(result.job_dir, 0)["reason"]["code"], "backend");
}

TEST(FatalPath, HealthyAbortExitsWithTheErrorsCode) {
  const auto result = run_ranks(ranks(1), [](int) -> int {
    GuardedRank g(0, 1, quick_watchdog(kSteady), kHardExit);
    g.fatal.set_abort_action([] {});
    g.fatal.fail(Error(ErrorCode::kLedger, "ledger diverged"));
    return 0;  // not reached: fail() exits
  });
  EXPECT_EQ(result.ranks[0].code, exit_code_for(ErrorCode::kLedger)) << result.describe();
  EXPECT_LT(result.ranks[0].ended_after, kHardExit + kSlack);
}

// Warm recovery: a curable cause runs dump, poison and abort, then ends the
// generation — fail() returns, a second trigger returns at once, and the
// process builds the next generation's handler and goes on.
TEST(FatalPath, ACurableCauseEndsTheGenerationNotTheProcess) {
  constexpr bool kWarm = true;
  const auto result = run_ranks(ranks(1), [](int) -> int {
    {
      GuardedRank g(0, 1, quick_watchdog(kSteady), kHardExit, kWarm);
      int aborts = 0;
      g.fatal.set_abort_action([&aborts] { ++aborts; });
      if (g.fatal.await_fatal_path()) return 90;  // nothing failed yet
      g.fatal.fail(Error(ErrorCode::kTimeout, "injected timeout"));
      if (!g.fatal.tripped()) return 91;
      g.fatal.fail(Error(ErrorCode::kLedger, "a second trigger while the generation unwinds"));
      if (!g.fatal.await_fatal_path()) return 92;
      if (aborts != 1) return 93;
      if (g.fatal.generation_cause().code != ErrorCode::kTimeout) return 94;
    }
    GuardedRank next(0, 1, quick_watchdog(kSteady), kHardExit, kWarm);  // one handler per process at a time
    return next.fatal.tripped() ? 95 : 0;
  });
  ASSERT_FALSE(result.hung) << result.describe();
  EXPECT_EQ(result.ranks[0].code, 0) << result.describe();
  EXPECT_EQ(read_dump(result.job_dir, 0)["reason"]["code"], "timeout");
  EXPECT_TRUE(FileStore(result.job_dir + "/store").check({poison_key(0)}));
}

TEST(FatalPath, UnderWarmRecoveryADeterministicCauseStillEndsTheProcess) {
  const auto result = run_ranks(ranks(1), [](int) -> int {
    GuardedRank g(0, 1, quick_watchdog(kSteady), kHardExit, true);
    g.fatal.set_abort_action([] {});
    g.fatal.fail(Error(ErrorCode::kLedger, "ledger diverged"));
    return 0;  // not reached: a restart cannot cure a ledger divergence
  });
  EXPECT_EQ(result.ranks[0].code, exit_code_for(ErrorCode::kLedger)) << result.describe();
}

TEST(FatalPath, ConcurrentTriggersDumpAndExitForTheFirstCauseOnly) {
  const auto result = run_ranks(ranks(1), [](int) -> int {
    GuardedRank g(0, 1, quick_watchdog(kSteady), kHardExit);
    const ErrorCode codes[] = {ErrorCode::kLedger, ErrorCode::kDigest, ErrorCode::kPlan,
                               ErrorCode::kPhase, ErrorCode::kBackend, ErrorCode::kParity};
    std::vector<std::thread> threads;
    for (const ErrorCode code : codes) {
      threads.emplace_back([&g, code] { g.fatal.fail(Error(code, "concurrent trigger")); });
    }
    for (auto& t : threads) t.join();  // never returns: fail() exits
    return 0;
  });
  ASSERT_FALSE(result.hung);
  const auto dump = read_dump(result.job_dir, 0);
  EXPECT_EQ(dump["reason"]["exit_code"], result.ranks[0].code) << result.describe();
  EXPECT_NE(result.ranks[0].code, 0);
  EXPECT_NE(result.ranks[0].code, kExitHardDeadline);
}

TEST(FatalPath, SigusrDumpsAndContinuesSigtermExitsWithDump) {
  const auto result = run_ranks(ranks(1), [](int) -> int {
    GuardedRank g(0, 1, quick_watchdog(kSteady), kHardExit);
    g.recorder.commit("header_sent", "boundary", "before SIGUSR1");
    raise(SIGUSR1);
    const auto path = dump_path(test::job_dir_from_env(), 0);
    for (int i = 0; i < 500 && !std::filesystem::exists(path); ++i) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    if (!std::filesystem::exists(path)) return 90;  // SIGUSR1 produced no dump
    std::filesystem::rename(path, path.string() + ".usr1");
    raise(SIGTERM);
    g.idle();
  });
  ASSERT_FALSE(result.hung);
  EXPECT_EQ(result.ranks[0].code, kExitTerminated) << result.describe();
  std::ifstream in(dump_path(result.job_dir, 0).string() + ".usr1");
  std::stringstream text;
  text << in.rdbuf();
  const auto usr1 = nlohmann::json::parse(text.str());
  EXPECT_EQ(usr1["reason"]["kind"], "signal");
  EXPECT_EQ(usr1["reason"]["code"], "sigusr1");
  EXPECT_EQ(usr1["events"][0]["kind"], "commit");
  const auto term = read_dump(result.job_dir, 0);
  EXPECT_EQ(term["reason"]["code"], "sigterm");
  EXPECT_EQ(term["reason"]["exit_code"], kExitTerminated);
  FileStore store(result.job_dir + "/store");
  EXPECT_TRUE(store.check({poison_key(0)}));
}

TEST(FatalPath, SecondHandlerInOneProcessIsRefused) {
  const auto result = run_ranks(ranks(1), [](int) -> int {
    GuardedRank g(0, 1, quick_watchdog(kSteady), kHardExit);
    FlightRecorder other;
    try {
      FatalHandler second(FatalOptions{}, other, nullptr);
    } catch (const Error& e) {
      return e.code() == ErrorCode::kInternal ? 0 : 91;
    }
    return 92;
  });
  EXPECT_TRUE(result.all_ok()) << result.describe();
}

}  // namespace
}  // namespace lockstep
