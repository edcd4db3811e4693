// The break-it suite of SPEC §7: every case is a real multi-process run of
// `lockstep run` with a fault injected (or an external signal), bounded in
// time. A failing case asserts the exit status and error class, that the job
// ended within its bound (a hang fails the test with the dumps attached),
// that every rank still alive wrote a dump, and that `lockstep doctor` names
// the right cause and rank. A succeeding case checks the emitted sequence and
// the counters instead. tests/breakit/CASES.md maps case ids to these tests.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "job_runner.h"

namespace lockstep::testing {
namespace {

using std::chrono::milliseconds;

// Generous for a loaded 2-core CI machine: start-up (rendezvous, Gloo
// connect, parity, weights) plus a few chunks plus the fatal path.
constexpr milliseconds kCaseBound{40'000};
// Exit codes of SPEC §7 outcomes (error.h exit_code_for, launcher 128+signal).
constexpr int kExitWire = 10, kExitVersion = 11, kExitTimeout = 20, kExitPeer = 21, kExitTerminated = 143;
constexpr int kExitMembership = 30, kExitPhase = 31, kExitParity = 32, kExitPlan = 34, kExitOwnership = 35;
constexpr int kExitDigest = 40, kExitStaleWork = 41, kExitKvLifecycle = 42, kExitInternal = 60;
constexpr int kExitHardDeadline = 70, kExitKilled = 128 + SIGKILL;

// The common job of every case; `extra` flags replace defaults of the same name.
std::vector<std::string> job_args(int nproc, const std::vector<std::string>& extra) {
  return run_json_args({{"--topology", "pp1"}, {"--nproc", std::to_string(nproc)}, {"--chunks", "6"},
                        {"--hard-cut-every", "0"}, {"--recompute-every", "2"}, {"--deadline-ms", "1500"},
                        {"--startup-deadline-ms", "20000"}},
                       extra);
}

struct FailureCase {
  const char* id;
  std::vector<std::string> args;
  int culprit_rank;          // the rank whose own check fired (-1: any)
  int culprit_exit;          // its exit code
  std::set<int> job_exits;   // acceptable exit codes of `lockstep run`
  const char* verdict;       // doctor verdict name
  const char* stdout_names;  // a string the report must contain ("" for none)
  std::set<int> no_dump_ranks = {};  // ranks that cannot dump (killed or stopped)
  int doctor_rank = -2;              // the rank the doctor must name; -2: culprit_rank
};

void expect_dumps(const JobRun& run, int nproc, const std::set<int>& no_dump_ranks) {
  for (int rank = 0; rank < nproc; ++rank) {
    if (no_dump_ranks.count(rank) != 0) continue;
    const auto dump = run.job_dir / "dumps" / ("rank-" + std::to_string(rank) + ".json");
    EXPECT_TRUE(std::filesystem::exists(dump)) << "rank " << rank << " left no dump\n" << describe_job(run);
  }
}

void check_failure(const FailureCase& c) {
  const int nproc = std::stoi(*(std::find(c.args.begin(), c.args.end(), "--nproc") + 1));
  const JobRun run = run_lockstep(c.args, kCaseBound);
  ASSERT_FALSE(run.hung) << c.id << " HUNG\n" << describe_job(run);
  // The launcher reports the rank that exited first, which may be a peer
  // stopped by the culprit's poison mark (21); the culprit's own exit code
  // is asserted per rank below, and the doctor must name the cause.
  EXPECT_TRUE(c.job_exits.count(run.exit_code) != 0 || run.exit_code == kExitPeer)
      << c.id << ": exit " << run.exit_code << "\n" << describe_job(run);
  const std::vector<int> codes = rank_exit_codes(run.job_dir);
  ASSERT_EQ(static_cast<int>(codes.size()), nproc) << describe_job(run);
  // Where every rank runs the same check (parity, digests, versions), the
  // launcher may stop the culprit while it is still exiting on its own.
  const bool every_rank_detects =
      std::string(c.verdict) == "parity" || std::string(c.verdict) == "digest" || std::string(c.id) == "A4";
  if (c.culprit_rank >= 0) {
    const int code = codes[static_cast<std::size_t>(c.culprit_rank)];
    EXPECT_TRUE(code == c.culprit_exit || (every_rank_detects && (code == kExitTerminated || code == kExitPeer)))
        << c.id << ": rank " << c.culprit_rank << " exited " << code << "\n" << describe_job(run);
  }
  ASSERT_TRUE(run.json.is_object()) << describe_job(run);
  EXPECT_EQ(run.json.value("ok", true), false);
  const auto& doctor = run.json["doctor"];
  EXPECT_EQ(doctor.value("verdict", ""), c.verdict) << c.id << "\n" << run.json.dump(2);
  const int doctor_rank = c.doctor_rank == -2 ? c.culprit_rank : c.doctor_rank;
  if (doctor_rank >= 0 && !every_rank_detects) {
    const auto ranks = doctor["primary"].value("ranks", std::vector<int>{});
    EXPECT_TRUE(std::find(ranks.begin(), ranks.end(), doctor_rank) != ranks.end())
        << c.id << ": doctor did not name rank " << doctor_rank << "\n" << run.json.dump(2);
  }
  if (*c.stdout_names != '\0') {
    EXPECT_NE(run.stdout_text.find(c.stdout_names), std::string::npos)
        << c.id << ": report does not mention '" << c.stdout_names << "'\n" << run.json.dump(2);
  }
  expect_dumps(run, nproc, c.no_dump_ranks);
  EXPECT_FALSE(std::filesystem::exists(run.job_dir / "summary.json")) << c.id << ": a failed job emitted a summary";
}

class BreakItFailure : public ::testing::TestWithParam<FailureCase> {};

TEST_P(BreakItFailure, StopsWithinBoundAndDoctorNamesCause) { check_failure(GetParam()); }

std::string case_name(const ::testing::TestParamInfo<FailureCase>& info) { return info.param.id; }

// Default injection ranks: Stage 0's own faults fire on rank 0; mesh faults
// on the last rank (a worker); the leader's on rank 1.
INSTANTIATE_TEST_SUITE_P(
    Cases, BreakItFailure,
    ::testing::Values(
        FailureCase{"A1", job_args(3, {"--inject", "A1"}), 0, kExitWire, {kExitWire}, "protocol", "guidance_scale"},
        FailureCase{"A2", job_args(3, {"--inject", "A2"}), 0, kExitWire, {kExitWire}, "protocol", "mask"},
        FailureCase{"A3", job_args(3, {"--inject", "A3"}), 0, kExitWire, {kExitWire}, "protocol", "latents"},
        FailureCase{"A4", job_args(3, {"--inject", "A4"}), 2, kExitVersion, {kExitVersion, kExitPeer}, "protocol", "rank 2"},
        FailureCase{"A5", job_args(3, {"--inject", "A5"}), 1, kExitWire, {kExitWire, kExitPeer}, "protocol",
                    "checksum"},
        FailureCase{"A6", job_args(3, {"--inject", "A6"}), 0, kExitOwnership, {kExitOwnership}, "protocol",
                    "decode"},
        FailureCase{"B1", job_args(3, {"--inject", "B1"}), 0, kExitMembership, {kExitMembership}, "wrong_group",
                    "mesh"},
        FailureCase{"B2", job_args(3, {"--inject", "B2"}), 2, kExitPhase, {kExitPhase}, "wrong_group", "generator"},
        FailureCase{"B3", job_args(3, {"--inject", "B3"}), 2, kExitParity, {kExitParity, kExitPeer}, "parity", "group_table"},
        FailureCase{"B4", job_args(3, {"--inject", "B4"}), 2, kExitParity, {kExitParity, kExitPeer}, "parity",
                    "extra_norm_all_reduce"},
        FailureCase{"B5", job_args(3, {"--inject", "B5"}), 2, kExitPlan, {kExitPlan}, "plan_mismatch", "plan"},
        FailureCase{"B6", job_args(3, {"--inject", "B6"}), 1, kExitStaleWork, {kExitStaleWork, kExitPeer},
                    "protocol", "chunk_index"},
        FailureCase{"C1", job_args(3, {"--inject", "C1"}), 0, kExitKilled, {kExitKilled}, "crash", "", {0}},
        FailureCase{"C2", job_args(3, {"--inject", "C2"}), 0, kExitInternal, {kExitInternal}, "stranded_commit",
                    "payload_owed"},
        FailureCase{"C4", job_args(3, {"--inject", "C4"}), -1, 0, {kExitTimeout, kExitPeer}, "crash", "all_reduce", {2}, 2},
        FailureCase{"C5", job_args(3, {"--inject", "C5"}), 2, kExitHardDeadline, {kExitHardDeadline, kExitPeer},
                    "crash", ""},
        FailureCase{"D3", job_args(3, {"--inject", "D3"}), 1, kExitStaleWork, {kExitStaleWork, kExitPeer},
                    "protocol", "call_id"},
        FailureCase{"F1", job_args(3, {"--inject", "F1"}), 0, kExitWire, {kExitWire}, "protocol",
                    "context_override"},
        FailureCase{"F2", job_args(5, {"--inject", "F2"}), 4, kExitDigest, {kExitDigest, kExitPeer}, "digest", "culprit ranks [4]"},
        FailureCase{"F3", job_args(3, {"--inject", "F3"}), 2, kExitKvLifecycle, {kExitKvLifecycle}, "protocol",
                    "init"},
        FailureCase{"G1", job_args(3, {"--inject", "G1"}), 2, kExitParity, {kExitParity, kExitPeer}, "parity",
                    "graph_capture"},
        FailureCase{"G2", job_args(3, {"--inject", "G2"}), 2, kExitWire, {kExitWire}, "protocol", "geometry"},
        FailureCase{"H1", job_args(5, {"--inject", "H1"}), 4, kExitDigest, {kExitDigest, kExitPeer}, "digest", "culprit ranks [4]"},
        FailureCase{"H2", job_args(5, {"--inject", "H2"}), 4, kExitDigest, {kExitDigest, kExitPeer}, "digest", "rank 4"}),
    case_name);

// ---- cases whose expected outcome is success --------------------------------

JobRun run_ok(std::vector<std::string> args) {
  JobRun run = run_lockstep(args, kCaseBound);
  EXPECT_FALSE(run.hung) << describe_job(run);
  EXPECT_EQ(run.exit_code, 0) << describe_job(run);
  EXPECT_TRUE(run.json.is_object() && run.json.value("ok", false)) << describe_job(run);
  return run;
}

// Every emitted chunk once, in order, from the epoch current when emitted.
void expect_clean_emits(const nlohmann::json& summary) {
  std::int64_t previous = -1;
  for (const auto& chunk : summary["emitted"]) {
    const auto index = chunk["chunk_index"].get<std::int64_t>();
    EXPECT_GT(index, previous) << "emitted out of order or twice";
    previous = index;
  }
  EXPECT_EQ(summary["chunks_emitted"].get<std::size_t>(), summary["emitted"].size());
}

bool emitted(const nlohmann::json& summary, std::int64_t chunk_index) {
  for (const auto& chunk : summary["emitted"]) {
    if (chunk["chunk_index"].get<std::int64_t>() == chunk_index) return true;
  }
  return false;
}

TEST(BreakIt, D1DuplicateEnvelopeDroppedAndEmittedOnce) {
  const JobRun run = run_ok(job_args(3, {"--inject", "D1"}));
  ASSERT_TRUE(run.json.is_object());
  expect_clean_emits(run.json);
  EXPECT_EQ(run.json["chunks_emitted"].get<int>(), 6);
  EXPECT_GE(run.json["mesh_duplicate_envelope_drops"].get<int>(), 1) << run.json.dump(2);
}

TEST(BreakIt, D2ResultDelayedPastHardCutIsDroppedByEpoch) {
  const JobRun run = run_ok(job_args(3, {"--chunks", "8", "--hard-cut-every", "4", "--inject", "D2"}));
  ASSERT_TRUE(run.json.is_object());
  expect_clean_emits(run.json);
  EXPECT_FALSE(emitted(run.json, 3)) << "the delayed result of chunk 3 was emitted after the cut";
  EXPECT_GE(run.json["stale_drops"].get<int>(), 1) << run.json.dump(2);
  EXPECT_EQ(run.json["hard_cuts"].get<int>(), 1);
  for (const auto& chunk : run.json["emitted"]) {
    EXPECT_EQ(chunk["cache_epoch"].get<int>(), chunk["chunk_index"].get<int>() < 4 ? 0 : 1);
  }
}

TEST(BreakIt, D4ResultsOutOfOrderInsideWindowEmittedInOrder) {
  const JobRun run = run_ok(job_args(3, {"--chunks", "8", "--inject", "D4"}));
  ASSERT_TRUE(run.json.is_object());
  expect_clean_emits(run.json);
  EXPECT_EQ(run.json["chunks_emitted"].get<int>(), 8);
  EXPECT_GE(run.json["reordered"].get<int>(), 1) << run.json.dump(2);
}

TEST(BreakIt, E1SlowDecodeBlocksStage0AndQueuesStayAtBound) {
  const JobRun run = run_ok(job_args(3, {"--chunks", "8", "--decode-ms", "3", "--inject", "E1:0"}));
  ASSERT_TRUE(run.json.is_object());
  expect_clean_emits(run.json);
  const auto& queues = run.json["queues"];
  EXPECT_EQ(queues["d_in"]["high_water"], queues["d_in"]["capacity"]) << "the producer never hit backpressure";
  EXPECT_LE(queues["d_out"]["high_water"].get<int>(), queues["d_out"]["capacity"].get<int>());
  EXPECT_GE(run.json["overlap"]["period_ms"]["median"].get<double>(), 30.0);
}

// Balanced stages of kStageMs each: D = 1 runs them back to back (period ~
// sum), D = 2 overlaps them (period ~ max). Each run is judged against the
// times it measured itself (medians per chunk), so a loaded machine that
// stretches them stretches the expectation with them. The mesh's side of
// the pipeline is its step plus its time between steps (`mesh_wait_ms`,
// measured by the leader: the result sent, the next payload pulled, the
// fan-out; on a loaded 2-core machine Stage 0's threads and the workers
// answer late, and that shows there rather than as an unexplained period).
// At D = 2 that time stays well below Stage 0's (at D = 1 it holds all of
// it): Stage 0 runs ahead. From D = 2 the next envelope is
// waiting when a chunk ends, and the leader pulls its payload before sending
// the result; at D = 1 it never can. That D = 2 overlaps at all is proven
// against the plain sum of the stage times, which no wait enters.
TEST(BreakIt, E2DepthSweepOverlapsFromDepthTwo) {
  constexpr const char* kStageMs = "40";
  for (int depth = 1; depth <= 2; ++depth) {
    const JobRun run = run_ok(job_args(3, {"--chunks", "10", "--depth", std::to_string(depth), "--decode-ms",
                                           kStageMs, "--generate-ms", kStageMs}));
    ASSERT_TRUE(run.json.is_object());
    const auto& overlap = run.json["overlap"];
    const double period = overlap["period_ms"]["median"].get<double>();
    const double stage0 = overlap["stage0_ms"]["median"].get<double>();
    const double stage1 = overlap["stage1_ms"]["median"].get<double>();
    const double boundary = overlap["boundary_ms"]["median"].get<double>();
    const double mesh_wait = overlap["mesh_wait_ms"]["median"].get<double>();
    const double mesh_side = stage1 + mesh_wait;
    const double sum_stage = stage0 + stage1 + boundary;
    const std::string seen = "D=" + std::to_string(depth) + ": period " + std::to_string(period) + " ms, stage0 " +
                             std::to_string(stage0) + " ms, stage1 " + std::to_string(stage1) + " ms, boundary " +
                             std::to_string(boundary) + " ms, mesh wait " + std::to_string(mesh_wait) + " ms";
    // pp1: every chunk crossed the boundary, and its cost is reported on its own.
    EXPECT_EQ(overlap["boundary_ms"]["count"].get<int>(), run.json["chunks_emitted"].get<int>()) << seen;
    EXPECT_GT(overlap["boundary_ms"]["median"].get<double>(), 0.0) << seen;
    const int pulled_ahead = run.json["payloads_pulled_ahead"].get<int>();
    if (depth == 1) {
      EXPECT_GT(period, 0.85 * (stage0 + stage1)) << "D=1 should run the stages back to back; " << seen;
      EXPECT_EQ(pulled_ahead, 0) << seen;
    } else {
      EXPECT_GE(pulled_ahead, 1) << seen;
      EXPECT_LT(mesh_wait, 0.5 * stage0) << "D=2: Stage 0 should run ahead, the mesh not waiting on it; " << seen;
      EXPECT_LT(period, 1.25 * std::max(stage0, mesh_side)) << "D=2 period is not ~max(stage0, mesh side); " << seen;
      EXPECT_LT(period, 0.8 * sum_stage) << "D=2 does not overlap the stages; " << seen;
    }
  }
}

// C3: SIGTERM to the supervisor while the job runs: every rank is gone.
TEST(BreakIt, C3SigtermToLauncherLeavesNoRank) {
  JobHandle handle = start_lockstep(job_args(3, {"--chunks", "100000", "--decode-ms", "5"}));
  std::vector<pid_t> pids;
  for (int attempt = 0; attempt < 400 && pids.size() < 3; ++attempt) {  // bounded: 400 x 25 ms
    std::this_thread::sleep_for(milliseconds(25));
    pids = job_rank_pids(handle.job_dir);
  }
  ASSERT_EQ(pids.size(), 3u) << "ranks never started";
  ASSERT_EQ(kill(handle.pid, SIGTERM), 0);
  const JobRun run = wait_lockstep(handle, kCaseBound);
  ASSERT_FALSE(run.hung) << describe_job(run);
  EXPECT_EQ(run.exit_code, kExitTerminated) << describe_job(run);
  for (const pid_t pid : pids) {
    EXPECT_NE(kill(pid, 0), 0) << "rank pid " << pid << " survived the launcher";
  }
}

}  // namespace
}  // namespace lockstep::testing
