// `lockstep run --backend nccl` end to end (issues 8, 16): the mesh runs the
// CUDA model on NCCL; Stage 0 decodes on the CPU and talks to the mesh over
// Gloo, or, with a GPU for every rank, on its own GPU over NCCL.
// Real processes under a hard bound, as the break-it suite runs them. The
// runs need a GPU (label gpu); the refusal test runs everywhere.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "breakit/job_runner.h"
#include "gpu/gpu_test_util.h"

namespace lockstep::testing {
namespace {

using std::chrono::milliseconds;

// Start-up includes CUDA and NCCL initialisation, then weight generation.
constexpr milliseconds kRunBound{120'000};
constexpr int kExitInvalidArgument = 2, kExitPlan = 34, kExitDigest = 40, kExitKvLifecycle = 42;

std::vector<std::string> nccl_job(const std::string& topology, int nproc, std::vector<std::string> extra) {
  std::vector<std::string> args{"run",  "--json",           "--backend",         "nccl",
                                "--topology", topology,     "--nproc",           std::to_string(nproc),
                                "--chunks", "12",           "--hard-cut-every",  "6",
                                "--recompute-every", "4",   "--decode-ms",       "2",
                                "--generate-ms", "0",       "--startup-deadline-ms", "60000"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::map<int, std::string> output_digests(const JobRun& run) {
  std::map<int, std::string> digests;
  for (const auto& chunk : run.json["emitted"]) {
    digests[chunk["chunk_index"].get<int>()] = chunk["output_digest"].get<std::string>();
  }
  return digests;
}

// Every requested chunk was emitted, flushed by a planned hard cut, or
// dropped stale (its result arrived after the cut had begun: how often
// depends on how far ahead Stage 0 runs, not on correctness).
void expect_all_chunks_accounted(const JobRun& run) {
  const int emitted = run.json["chunks_emitted"].get<int>();
  EXPECT_GE(emitted, 1) << run.json.dump(2);
  EXPECT_EQ(emitted + run.json["discarded_at_cuts"].get<int>() + run.json["stale_drops"].get<int>(), 12)
      << run.json.dump(2);
}

JobRun run_ok(const std::vector<std::string>& args) {
  JobRun run = run_lockstep(args, kRunBound);
  EXPECT_FALSE(run.hung) << describe_job(run);
  EXPECT_EQ(run.exit_code, 0) << describe_job(run);
  EXPECT_TRUE(run.json.is_object() && run.json.value("ok", false)) << describe_job(run);
  return run;
}

// Outputs of chunks both runs emitted are byte-equal; at least one compared.
void expect_same_outputs(const JobRun& first, const JobRun& second) {
  const std::map<int, std::string> first_digests = output_digests(first);
  int compared = 0;
  for (const auto& [chunk, digest] : output_digests(second)) {
    const auto found = first_digests.find(chunk);
    if (found == first_digests.end()) continue;
    EXPECT_EQ(found->second, digest) << "chunk " << chunk;
    ++compared;
  }
  EXPECT_GE(compared, 1);
}

TEST(NcclRun, Pp0StreamsWithACpuStage0AndAOneGpuMesh) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  const JobRun first = run_ok(nccl_job("pp0", 2, {"--model", "small"}));
  ASSERT_TRUE(first.json.is_object());
  EXPECT_EQ(first.json["config"]["backend"], "nccl");
  expect_all_chunks_accounted(first);
  EXPECT_GE(first.json["recomputes"].get<int>(), 1) << first.json.dump(2);
  // The same job again, each denoise call replayed from a CUDA graph, gives
  // the same bytes for every chunk both emitted: the GPU path is
  // deterministic and capture changes nothing.
  const JobRun second = run_ok(nccl_job("pp0", 2, {"--model", "small", "--graph-capture"}));
  ASSERT_TRUE(second.json.is_object());
  EXPECT_EQ(first.json["config"]["graph_capture"], false);
  EXPECT_EQ(second.json["config"]["graph_capture"], true);
  expect_same_outputs(first, second);
}

// A TP mesh of two GPUs: the guarded mesh sums are stream-ordered, so each
// denoise call, NCCL all-reduces included, replays from a CUDA graph; the
// per-chunk ledger digest check passes (replays ledger what capture saw) and
// the outputs equal the eager run's.
TEST(NcclRun, TpOnTwoGpusReplaysTheMeshSumsFromCudaGraphs) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs two CUDA devices";
  const JobRun eager = run_ok(nccl_job("tp", 2, {"--model", "small"}));
  const JobRun graph = run_ok(nccl_job("tp", 2, {"--model", "small", "--graph-capture"}));
  ASSERT_TRUE(eager.json.is_object() && graph.json.is_object());
  expect_all_chunks_accounted(graph);
  EXPECT_EQ(graph.json["config"]["graph_capture"], true);
  expect_same_outputs(eager, graph);
}

// Issue 16: with a GPU for every rank, Stage 0 takes its own and the
// boundary runs on NCCL: inputs made on Stage 0's GPU, payloads device to
// device both ways, output digests computed and checked on the GPUs, decode
// on the GPU. The same job with one GPU visible (Stage 0 on the CPU, the
// boundary on Gloo) emits the same bytes: the GPU makes the CPU's inputs and
// the device digest is the host's.
TEST(NcclRun, Stage0OnItsOwnGpuEmitsWhatACpuStage0Emits) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs two CUDA devices";
  const JobRun device = run_ok(nccl_job("pp0", 2, {"--model", "small"}));
  ASSERT_EQ(::setenv("CUDA_VISIBLE_DEVICES", "0", 1), 0);
  const JobRun host = run_ok(nccl_job("pp0", 2, {"--model", "small"}));
  ::unsetenv("CUDA_VISIBLE_DEVICES");
  ASSERT_TRUE(device.json.is_object() && host.json.is_object());
  EXPECT_EQ(device.json["stage0_device"], "cuda:0");
  EXPECT_EQ(host.json["stage0_device"], "cpu");
  expect_all_chunks_accounted(device);
  expect_same_outputs(host, device);
}

// Fault H1 perturbs one mesh rank's input on its GPU: the digests the mesh
// compares are computed there, and they catch it.
TEST(NcclRun, AnInputPerturbedOnAGpuIsCaughtByTheDeviceDigests) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  if (cuda_device_count() < 3) GTEST_SKIP() << "needs three CUDA devices";
  const JobRun run = run_lockstep(nccl_job("pp1", 3, {"--inject", "H1"}), kRunBound);
  EXPECT_FALSE(run.hung) << describe_job(run);
  EXPECT_EQ(run.exit_code, kExitDigest) << describe_job(run);
}

TEST(NcclRun, TpOnOneRankDrivesTheGpuFromRankZero) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  const JobRun run = run_ok(nccl_job("tp", 1, {}));
  ASSERT_TRUE(run.json.is_object());
  expect_all_chunks_accounted(run);
}

// The guards hold on the GPU mesh: each fault stops the job with its own
// exit code, within the bound, the culprit being the GPU rank.
TEST(NcclRun, GuardsStopFaultsOnTheGpuMesh) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  const struct {
    const char* id;
    int exit_code;
  } cases[] = {{"F3", kExitKvLifecycle}, {"B5", kExitPlan}, {"H2", kExitDigest}};
  for (const auto& fault : cases) {
    const JobRun run = run_lockstep(nccl_job("pp0", 2, {"--inject", fault.id}), kRunBound);
    EXPECT_FALSE(run.hung) << fault.id << "\n" << describe_job(run);
    EXPECT_EQ(run.exit_code, fault.exit_code) << fault.id << "\n" << describe_job(run);
    const std::vector<int> ranks = rank_exit_codes(run.job_dir);
    ASSERT_EQ(ranks.size(), 2u) << fault.id;
    EXPECT_EQ(ranks[1], fault.exit_code) << fault.id << "\n" << describe_job(run);
  }
}

// Without a GPU for every mesh rank the job is refused before any rank
// starts, saying why, never silently run on Gloo.
TEST(NcclRun, AMeshTheGpusCannotHoldIsRefusedBeforeAnyRankStarts) {
  const JobRun run = run_lockstep(nccl_job("pp1", 3, {}), kRunBound);
  EXPECT_FALSE(run.hung) << describe_job(run);
  EXPECT_EQ(run.exit_code, kExitInvalidArgument) << describe_job(run);
  const bool names_the_reason = run.stderr_text.find("NCCL needs a GPU for each") != std::string::npos ||
                                run.stderr_text.find("built without CUDA") != std::string::npos;
  EXPECT_TRUE(names_the_reason) << run.stderr_text;
  EXPECT_TRUE(rank_exit_codes(run.job_dir).empty()) << "ranks were started";
}

}  // namespace
}  // namespace lockstep::testing
