// Guard end to end in real processes over Gloo and the file store: hangs and
// deaths end every rank within the deadline with dumps; parity differences
// stop the job before inference; tripwires name the culprit rank.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "guard/guarded_rank.h"
#include "lockstep/communicator.h"
#include "lockstep/digest.h"
#include "lockstep/error.h"
#include "lockstep/file_store.h"
#include "lockstep/gloo_backend.h"
#include "lockstep/group_table.h"
#include "lockstep/guard_observer.h"
#include "lockstep/parity.h"
#include "lockstep/tripwire.h"
#include "support/multiprocess.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
using test::GuardedRank;
using test::quick_watchdog;
using test::RanksOptions;
using test::run_ranks;

constexpr int kWorld = 3;
constexpr milliseconds kSteady{500};
// Backend timeouts far beyond the watchdog's: the watchdog must be what ends a hang.
constexpr milliseconds kCallTimeout{20'000};
constexpr milliseconds kDetectionBound = kSteady + milliseconds(1000);
// Exit codes a child returns when it saw the wrong verdict (never lockstep's).
constexpr int kWrongVerdict = 99;

// A rank of a tp job (world = mesh = all ranks) with the guard stack wired in.
struct MeshRank {
  explicit MeshRank(int rank)
      : guard(rank, kWorld, quick_watchdog(kSteady)),
        observer(guard.recorder, &guard.watchdog),
        comm(options(rank), factory, guard.store, &observer) {
    guard.fatal.set_abort_action([this] { comm.abort(); });
    FatalSources sources;
    sources.armed = [this] { return guard.watchdog.armed(); };
    sources.ledgers = [this] { return ledger_summaries(comm.gate()); };
    guard.fatal.set_sources(sources);
    comm.set_phase(Phase::kControl);
  }

  static CommunicatorOptions options(int rank) {
    CommunicatorOptions o;
    o.global_rank = rank;
    o.groups = make_standard_group_table(Topology::kTp, kWorld);
    o.connect_timeout = milliseconds(20'000);
    return o;
  }

  void all_reduce_f32(std::size_t count = 4) {
    std::vector<float> data(count, 1.0f);
    comm.all_reduce("mesh", data.data(), count, DType::kF32, ReduceOp::kSum, kCallTimeout);
  }

  // The runtime's catch: every lockstep::Error goes down the fatal path.
  template <class Body>
  [[noreturn]] void guarded(Body&& body) {
    try {
      body();
    } catch (const Error& e) {
      guard.fatal.fail(e);
    }
    guard.idle();
  }

  GuardedRank guard;
  GuardObserver observer;
  GlooBackendFactory factory;
  Communicator comm;
};

nlohmann::json read_dump(const std::string& job_dir, int rank) {
  std::ifstream in(dump_path(job_dir, rank));
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str(), nullptr, false);
}

RanksOptions ranks() {
  RanksOptions options;
  options.world_size = kWorld;
  options.wall_timeout = milliseconds(40'000);
  return options;
}

bool has_event(const nlohmann::json& dump, const std::string& op, const std::string& group) {
  for (const auto& e : dump["events"]) {
    if (e["op"] == op && e["group"] == group) return true;
  }
  return false;
}

// Every rank's dump was written within the bound after the stuck call began.
void expect_all_dumped_in_time(const test::RanksResult& result, std::int64_t fault_ns) {
  for (int r = 0; r < kWorld; ++r) {
    const auto dump = read_dump(result.job_dir, r);
    ASSERT_TRUE(dump.is_object()) << "rank " << r << " left no dump\n" << result.describe();
    const std::int64_t after_ms = (dump["dumped_at_ns"].get<std::int64_t>() - fault_ns) / 1'000'000;
    EXPECT_LE(after_ms, kDetectionBound.count()) << "rank " << r;
  }
}

TEST(GuardMultiproc, RankThatNeverCallsTheCollectiveStopsEveryRankWithDumps) {
  const auto result = run_ranks(ranks(), [](int rank) -> int {
    MeshRank m(rank);
    m.guarded([&] {
      m.all_reduce_f32();  // every rank: warm-up, completes
      if (rank != 2) m.all_reduce_f32();  // rank 2 never joins this one
    });
  });
  ASSERT_FALSE(result.hung) << result.describe();
  EXPECT_EQ(result.ranks[0].code, exit_code_for(ErrorCode::kTimeout)) << result.describe();
  EXPECT_EQ(result.ranks[1].code, exit_code_for(ErrorCode::kTimeout)) << result.describe();
  EXPECT_EQ(result.ranks[2].code, exit_code_for(ErrorCode::kPeerFailure)) << result.describe();

  const auto stuck = read_dump(result.job_dir, 0);
  ASSERT_TRUE(stuck.is_object());
  ASSERT_EQ(stuck["armed"].size(), 1u);
  EXPECT_EQ(stuck["armed"][0]["what"], "all_reduce");
  EXPECT_EQ(stuck["armed"][0]["group"], "mesh");
  EXPECT_EQ(stuck["armed"][0]["group_seq"], 1);
  EXPECT_EQ(stuck["ledgers"]["mesh"]["next_seq"], 2);
  expect_all_dumped_in_time(result, stuck["armed"][0]["started_ns"].get<std::int64_t>());
  for (int r = 0; r < kWorld; ++r) {
    EXPECT_TRUE(has_event(read_dump(result.job_dir, r), "all_reduce", "mesh")) << "rank " << r;
  }
  EXPECT_EQ(read_dump(result.job_dir, 2)["ledgers"]["mesh"]["next_seq"], 1);
}

TEST(GuardMultiproc, KilledRankStopsItsPeersWithDumps) {
  const auto result = run_ranks(ranks(), [](int rank) -> int {
    MeshRank m(rank);
    m.guarded([&] {
      m.all_reduce_f32();
      if (rank == 2) raise(SIGKILL);
      m.all_reduce_f32();
    });
  });
  ASSERT_FALSE(result.hung) << result.describe();
  EXPECT_TRUE(result.ranks[2].signaled);
  for (int r = 0; r < 2; ++r) {
    const int code = result.ranks[r].code;
    EXPECT_TRUE(code == exit_code_for(ErrorCode::kTimeout) ||
                code == exit_code_for(ErrorCode::kPeerFailure) ||
                code == exit_code_for(ErrorCode::kBackend))
        << result.describe();
    const auto dump = read_dump(result.job_dir, r);
    ASSERT_TRUE(dump.is_object()) << "rank " << r;
    EXPECT_TRUE(has_event(dump, "all_reduce", "mesh"));
  }
  // The kill is the fault; both survivors are gone within the bound of it.
  const auto spread = std::max(result.ranks[0].ended_after, result.ranks[1].ended_after) -
                      result.ranks[2].ended_after;
  EXPECT_LE(spread, kDetectionBound) << result.describe();
}

// ---- parity: each class differs on rank 1 only ------------------------------

ParityInputs standard_inputs() {
  ParityInputs in;
  in.topology = "tp";
  in.world_size = kWorld;
  in.plan_id = "plan-1";
  in.group_table_digest = make_standard_group_table(Topology::kTp, kWorld).digest();
  in.model_config_digest = digest_string("tiny");
  in.dtype = "f32";
  in.resolved = {{"backend.mesh", "gloo"}};
  in.parity_env = {"LOCKSTEP_TEST_KERNEL"};
  return in;
}

struct ParityCase {
  const char* name;
  std::function<void(ParityInputs&)> perturb;
  ErrorCode code;
  const char* key;
};

void run_parity_case(const ParityCase& c) {
  const auto result = run_ranks(ranks(), [&c](int rank) -> int {
    ParityInputs in = standard_inputs();
    if (rank == 1) c.perturb(in);
    FileStore store(test::job_dir_from_env() + "/store");
    try {
      exchange_parity(store, make_parity_record(rank, in), kWorld, milliseconds(10'000));
    } catch (const Error& e) {
      const bool named = std::string(e.what()).find(c.key) != std::string::npos;
      if (!named || rank == 0) std::fprintf(stderr, "[rank %d] %s\n", rank, e.what());
      return named ? exit_code_for(e.code()) : kWrongVerdict;
    }
    return 0;  // inference would start here: the test fails on this
  });
  ASSERT_FALSE(result.hung) << c.name << "\n" << result.describe();
  for (const auto& r : result.ranks) {
    EXPECT_EQ(r.code, exit_code_for(c.code)) << c.name << "\n" << result.describe();
  }
}

TEST(GuardMultiproc, ParityDifferencesStopTheJobBeforeInference) {
  const ParityCase cases[] = {
      {"graph capture (G1)", [](ParityInputs& in) { in.graph_capture = true; }, ErrorCode::kParity,
       "graph_capture"},
      {"group order (B3)",
       [](ParityInputs& in) {
         GroupTable reordered(kWorld);
         reordered.add("mesh", {0, 1, 2});
         reordered.add("world", {0, 1, 2});
         in.group_table_digest = reordered.digest();
       },
       ErrorCode::kParity, "group_table_digest"},
      {"env key", [](ParityInputs&) { setenv("LOCKSTEP_TEST_KERNEL", "fused", 1); },
       ErrorCode::kParity, "env.LOCKSTEP_TEST_KERNEL"},
      {"resolved backend", [](ParityInputs& in) { in.resolved["backend.mesh"] = "nccl"; },
       ErrorCode::kParity, "resolved.backend.mesh"},
      {"protocol range (A4)", [](ParityInputs& in) { in.protocol = VersionRange{7, 8}; },
       ErrorCode::kVersion, "rank 1"},
  };
  for (const ParityCase& c : cases) run_parity_case(c);
}

// ---- tripwires -----------------------------------------------------------

// Runs `body` on every rank; the child exits 0 only when body throws `code`
// with every needle in its message.
void expect_every_rank_trips(ErrorCode code, const std::vector<std::string>& needles,
                             std::function<void(MeshRank&, int)> body) {
  const auto result = run_ranks(ranks(), [&](int rank) -> int {
    MeshRank m(rank);
    try {
      body(m, rank);
    } catch (const Error& e) {
      bool right = e.code() == code;
      for (const auto& needle : needles) right = right && std::string(e.what()).find(needle) != std::string::npos;
      // Rank 0's message shows what an operator reads; any wrong one is shown too.
      if (!right || rank == 0) std::fprintf(stderr, "[rank %d] %s\n", rank, e.what());
      return right ? 0 : kWrongVerdict;
    }
    return kWrongVerdict + 1;  // the tripwire stayed silent
  });
  ASSERT_FALSE(result.hung) << result.describe();
  EXPECT_TRUE(result.all_ok()) << needles.front() << "\n" << result.describe();
}

std::vector<std::uint64_t> expected_shards() {
  std::vector<std::uint64_t> expected;
  for (int r = 0; r < kWorld; ++r) expected.push_back(digest_string("seed-7/shard-" + std::to_string(r)));
  return expected;
}

TEST(GuardMultiproc, MutatedWeightShardIsNamedAtStartup) {
  expect_every_rank_trips(ErrorCode::kDigest, {"rank 1 loaded"}, [](MeshRank& m, int rank) {
    const auto expected = expected_shards();
    const std::uint64_t loaded = rank == 1 ? expected[1] ^ 1 : expected[static_cast<std::size_t>(rank)];
    m.comm.set_phase(Phase::kStartup);
    check_weight_fingerprints(m.comm, "mesh", loaded, expected, kCallTimeout);
  });
}

TEST(GuardMultiproc, MatchingWeightShardsPass) {
  const auto result = run_ranks(ranks(), [](int rank) -> int {
    MeshRank m(rank);
    const auto expected = expected_shards();
    check_weight_fingerprints(m.comm, "mesh", expected[static_cast<std::size_t>(rank)], expected,
                              kCallTimeout);
    check_chunk_digests(m.comm, "mesh", 11, 22, kCallTimeout);
    return 0;
  });
  EXPECT_TRUE(result.all_ok()) << result.describe();
}

TEST(GuardMultiproc, PerturbedInputIsNamedByItsRank) {
  expect_every_rank_trips(ErrorCode::kDigest,
                          {"input digest differs across group 'mesh' (culprit ranks [2])"},
                          [](MeshRank& m, int rank) {
                            m.all_reduce_f32();
                            check_chunk_digests(m.comm, "mesh", rank == 2 ? 0xbad : 0x600d, 7,
                                                kCallTimeout);
                          });
}

TEST(GuardMultiproc, LedgerDivergenceIsNamedAtTheFirstDivergentEntry) {
  // Same bytes on the wire (4 x 4 bytes), so Gloo completes; the ledgers differ.
  expect_every_rank_trips(ErrorCode::kLedger, {"rank 1 vs rank 0", "seq 1", "i32"}, [](MeshRank& m, int rank) {
    m.all_reduce_f32();
    std::vector<std::int32_t> ints(4, 1);
    std::vector<float> floats(4, 1.0f);
    if (rank == 1) {
      m.comm.all_reduce("mesh", ints.data(), 4, DType::kI32, ReduceOp::kSum, kCallTimeout);
    } else {
      m.comm.all_reduce("mesh", floats.data(), 4, DType::kF32, ReduceOp::kSum, kCallTimeout);
    }
    check_chunk_digests(m.comm, "mesh", 1, 2, kCallTimeout);
  });
}

}  // namespace
}  // namespace lockstep
