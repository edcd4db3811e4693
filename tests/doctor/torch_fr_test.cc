// PyTorch flight-recorder dumps (fixtures/torch_fr, made by make_fr_dumps.py
// in torch 2.11's shape) read by the doctor: the same planted fault with the
// culprit at every rank position names that rank, a size mismatch names the
// odd rank, JSON reads like pickle, old versions are refused by name.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>

#include "doctor/pickle_reader.h"
#include "doctor/pickle_writer.h"
#include "doctor/torch_fr.h"
#include "lockstep/doctor.h"
#include "lockstep/trace.h"

namespace lockstep {
namespace {

const std::string kFixtures = LOCKSTEP_TORCH_FR_FIXTURES;

Diagnosis diagnose_fixture(const std::string& scenario) {
  return diagnose(kFixtures + "/" + scenario, DoctorOptions{});
}

TEST(TorchFlightRecorder, ASkippedCollectiveNamesTheCulpritAtEveryRankPosition) {
  for (int culprit = 0; culprit < 4; ++culprit) {
    SCOPED_TRACE("culprit rank " + std::to_string(culprit));
    const Diagnosis d = diagnose_fixture("skip-" + std::to_string(culprit));
    EXPECT_TRUE(d.problems.empty());
    EXPECT_EQ(d.verdict, Verdict::kHang);
    EXPECT_EQ(d.primary.ranks, std::vector<int>{culprit});
    EXPECT_EQ(d.primary.group, "0");
    EXPECT_EQ(d.primary.op, "all_reduce");
    EXPECT_EQ(d.primary.group_seq, 3);
    EXPECT_EQ(d.primary.others.size(), 3u);
    const std::string text = format_text(d);
    EXPECT_NE(text.find("called from /app/pipeline.py:88 in denoise_step"), std::string::npos)
        << "the user's frame, not torch's: " << text;
  }
}

TEST(TorchFlightRecorder, ASizeMismatchNamesTheOddRank) {
  const Diagnosis d = diagnose_fixture("mismatch");
  EXPECT_EQ(d.verdict, Verdict::kMismatch);
  EXPECT_EQ(d.primary.ranks, std::vector<int>{2});
  EXPECT_EQ(d.primary.others, (std::vector<int>{0, 1, 3}));
  EXPECT_EQ(d.primary.group_seq, 2);
  EXPECT_NE(format_text(d).find("rank 2 called all_reduce(f32 x512)"), std::string::npos) << format_text(d);
}

TEST(TorchFlightRecorder, JsonDumpsReadLikePickledOnes) {
  const Diagnosis d = diagnose_fixture("json");
  EXPECT_EQ(d.verdict, Verdict::kHang);
  EXPECT_EQ(d.primary.ranks, std::vector<int>{1});
}

TEST(TorchFlightRecorder, AVersionOutsideTheReadRangeIsAProblemNamingIt) {
  const Diagnosis d = diagnose_fixture("old-version");
  EXPECT_EQ(d.verdict, Verdict::kNoDumps);
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_NE(d.problems[0].message.find("version '2.1'; the doctor reads versions 2.2 to 2.10"), std::string::npos)
      << d.problems[0].message;
}

// p2p entries pair per direction of a pair of ranks, the peer read from
// torch's profiling name ("nccl:send 0->1"): a size mismatch between a send
// and its recv names both ends (a pair has no majority).
TEST(TorchFlightRecorder, APairWhoseSendAndRecvDisagreeIsAMismatchNamingBothEnds) {
  const Diagnosis d = diagnose_fixture("p2p-size");
  EXPECT_TRUE(d.problems.empty());
  EXPECT_EQ(d.verdict, Verdict::kMismatch) << format_text(d);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{0, 1}));
  EXPECT_EQ(d.primary.group, "0 p2p 0->1");
  EXPECT_EQ(d.primary.group_seq, 1);
  const std::string text = format_text(d);
  EXPECT_NE(text.find("rank 0 called send(f32 x1024, peer 1)"), std::string::npos) << text;
  EXPECT_NE(text.find("rank 1 called recv(f32 x512, peer 0)"), std::string::npos) << text;
}

// Once a rank's ring buffer dropped entries, the n-th call of a direction in
// a group of more than two no longer means the same call on both sides: those
// p2p entries stay notes, and no verdict rests on them.
TEST(TorchFlightRecorder, P2pCallsOfAWrappedBufferAreNotPairedByOrder) {
  const Diagnosis d = diagnose_fixture("p2p-wrapped");
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_NE(d.problems[0].message.find("p2p calls of process groups of more than two ranks are not paired"),
            std::string::npos)
      << d.problems[0].message;
  EXPECT_EQ(d.primary.group.find("p2p"), std::string::npos) << format_text(d);
  const Diagnosis unwrapped = diagnose_fixture("p2p-unposted-2");
  EXPECT_EQ(unwrapped.primary.group, "0 p2p 0->2") << "the same calls, unwrapped, are paired";
}

// One batch_isend_irecv on both ranks of a pair: the send and the recv share
// a p2p_seq_id and each rank sends first; each message pairs with its match
// in its own direction, so there is nothing to report.
TEST(TorchFlightRecorder, ABatchedExchangeIsNoMismatch) {
  const Diagnosis d = diagnose_fixture("p2p-batch");
  EXPECT_TRUE(d.problems.empty());
  EXPECT_NE(d.verdict, Verdict::kMismatch) << format_text(d);
  EXPECT_EQ(d.primary.group.find("p2p"), std::string::npos) << format_text(d);
}

// Rank 0 sends to ranks 1 and 2; one of them never posts its recv. Rank 0's
// p2p_seq_id numbers both peers' calls, so pairing by it would set the
// innocent peer's recv against the wrong send: the doctor pairs per pair and
// names the rank that never posted, wherever it sits.
TEST(TorchFlightRecorder, ARecvNeverPostedNamesThatPeerNotTheOther) {
  for (int culprit : {1, 2}) {
    SCOPED_TRACE("culprit rank " + std::to_string(culprit));
    const Diagnosis d = diagnose_fixture("p2p-unposted-" + std::to_string(culprit));
    EXPECT_TRUE(d.problems.empty());
    EXPECT_EQ(d.primary.ranks, std::vector<int>{culprit}) << format_text(d);
    EXPECT_EQ(d.primary.group, "0 p2p 0->" + std::to_string(culprit)) << format_text(d);
    EXPECT_EQ(d.primary.op, "send") << format_text(d);
    EXPECT_TRUE(d.verdict == Verdict::kHang || d.verdict == Verdict::kMissingParticipant) << format_text(d);
  }
}

// Real dumps: torch 2.11 on 2 H200s, faults planted by
// fixtures/torch_fr/plant_fault.py (scripts/device_fr_fixtures.sh, 2026-11-27).
// A rank that skipped, broadcast instead, or was killed ended without a dump.
TEST(TorchFlightRecorder, RealTorch211DumpsOfPlantedFaults) {
  struct Case {
    const char* scenario;
    Verdict verdict;
    std::vector<int> ranks;
  };
  const std::vector<Case> cases = {
      {"real/skip", Verdict::kCrash, {1}},       // rank 1 skipped all_reduce #3 and left (no dump)
      {"real/bcast", Verdict::kCrash, {1}},      // rank 1 broadcast where rank 0 all_reduced
      {"real/kill", Verdict::kCrash, {1}},       // rank 1 killed with SIGKILL
      {"real/size", Verdict::kMismatch, {0, 1}},  // 4096 vs 1024 elements: two ranks, no majority
      {"real/p2p", Verdict::kHang, {0}},         // rank 0 sent where rank 1 all_reduced
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.scenario);
    const Diagnosis d = diagnose_fixture(c.scenario);
    EXPECT_TRUE(d.problems.empty()) << (d.problems.empty() ? "" : d.problems[0].message);
    EXPECT_EQ(d.verdict, c.verdict) << format_text(d);
    EXPECT_EQ(d.primary.ranks, c.ranks) << format_text(d);
    EXPECT_EQ(d.primary.group, "0");
    EXPECT_EQ(d.primary.op, "all_reduce");
    EXPECT_EQ(d.primary.group_seq, 3);
  }
}

// Torch's JSON form, as real dumps (torch 2.11 on 2 H200s, plant_fault.py
// json, 2026-11-27: each rank wrote _dump_nccl_trace_json itself after rank
// 1 skipped the third all_reduce). Same reader rules, same verdict as the
// pickle form gives for the skip.
TEST(TorchFlightRecorder, RealTorch211JsonDumpsNameTheRankThatSkipped) {
  const Diagnosis d = diagnose_fixture("real/json");
  EXPECT_TRUE(d.problems.empty()) << (d.problems.empty() ? "" : d.problems[0].message);
  EXPECT_EQ(d.verdict, Verdict::kHang) << format_text(d);
  EXPECT_EQ(d.primary.ranks, std::vector<int>{1}) << format_text(d);
  EXPECT_EQ(d.primary.group, "0");
  EXPECT_EQ(d.primary.op, "all_reduce");
  EXPECT_EQ(d.primary.group_seq, 3);
}

// Real dumps of 4 ranks (torch 2.11 on 4 H200s, plant_fault.py subgroup-<R>,
// 2026-11-27): two 2-rank subgroups [0, 1] (pg 1) and [2, 3] (pg 2), rank R
// skips its subgroup's third all_reduce and goes on to the world all_reduce,
// where the other pair waits too. Whichever rank skipped, the doctor names it
// on its own subgroup, not the ranks of the other one.
TEST(TorchFlightRecorder, RealTorch211SubgroupSkipNamesTheSkipperAtEveryPosition) {
  for (int culprit = 0; culprit < 4; ++culprit) {
    SCOPED_TRACE("culprit rank " + std::to_string(culprit));
    const Diagnosis d = diagnose_fixture("real/subgroup-" + std::to_string(culprit));
    EXPECT_TRUE(d.problems.empty()) << (d.problems.empty() ? "" : d.problems[0].message);
    EXPECT_EQ(d.verdict, Verdict::kHang) << format_text(d);
    EXPECT_EQ(d.primary.ranks, std::vector<int>{culprit}) << format_text(d);
    EXPECT_EQ(d.primary.group, culprit < 2 ? "1" : "2") << format_text(d);
    EXPECT_EQ(d.primary.op, "all_reduce");
    EXPECT_EQ(d.primary.group_seq, 3);
  }
}

TEST(TorchFlightRecorder, TraceRendersTheirCallsPerRank) {
  std::ostringstream out;
  const TraceSummary summary = write_trace(kFixtures + "/real/size", out);
  EXPECT_EQ(summary.ranks, (std::vector<int>{0, 1}));
  EXPECT_TRUE(summary.problems.empty());
  EXPECT_NE(out.str().find("all_reduce #3"), std::string::npos) << out.str();
}

// A real C4 job (rank 2 SIGSTOPped in the mesh) through the export and back,
// in both forms: the pickle (what fr_trace reads) and JSON.
TEST(TorchFlightRecorder, LockstepDumpsExportedAsFlightRecorderDumpsGiveTheSameVerdict) {
  const std::string lockstep_dumps = kFixtures + "/../c4_sigstop";
  const Diagnosis original = diagnose(lockstep_dumps, DoctorOptions{});
  for (const auto& [format, first_file] : {std::pair{TorchFrFormat::kPickle, "nccl_trace_rank_0"},
                                           std::pair{TorchFrFormat::kJson, "nccl_trace_rank_0.json"}}) {
    SCOPED_TRACE(first_file);
    const std::filesystem::path out = std::filesystem::temp_directory_path() /
                                      ("lockstep-fr-export-" + std::to_string(::getpid()));
    const auto written = export_torch_flight_recorder(lockstep_dumps, out, format);
    ASSERT_EQ(written.size(), 3u);
    EXPECT_EQ(written[0].filename(), first_file);
    const Diagnosis exported = diagnose(out, DoctorOptions{});
    std::filesystem::remove_all(out);
    EXPECT_TRUE(exported.problems.empty()) << exported.problems[0].message;
    EXPECT_EQ(exported.verdict, original.verdict) << format_text(exported);
    EXPECT_EQ(exported.primary.ranks, original.primary.ranks);
    EXPECT_EQ(exported.primary.group, "mesh");
    EXPECT_EQ(exported.primary.group_seq, original.primary.group_seq);
  }
}

// The writer's pickles read back through the restricted reader value for
// value: ints of every width, floats, strings written once and referenced
// after, nested containers, empty ones.
TEST(TorchFlightRecorder, PickleWriterRoundTripsThroughTheReader) {
  const nlohmann::json value = {{"small", -7},          {"big", 1'700'000'000'123'456'789LL}, {"real", 2.5},
                                {"text", "frame.py"},   {"again", "frame.py"},                {"none", nullptr},
                                {"yes", true},          {"list", {1, "frame.py", {{"k", false}}}},
                                {"empty_list", nlohmann::json::array()}, {"empty_dict", nlohmann::json::object()}};
  const std::string bytes = doctor::write_pickle(value);
  const auto root = doctor::read_pickle(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  EXPECT_EQ(root->get("small")->integer, -7);
  EXPECT_EQ(root->get("big")->integer, 1'700'000'000'123'456'789LL);
  EXPECT_EQ(root->get("real")->real, 2.5);
  EXPECT_EQ(root->get("again")->text, "frame.py");
  EXPECT_EQ(root->get("none")->kind, doctor::PickleValue::Kind::kNone);
  EXPECT_TRUE(root->get("yes")->boolean);
  ASSERT_EQ(root->get("list")->items.size(), 3u);
  EXPECT_EQ(root->get("list")->items[1]->text, "frame.py");
  EXPECT_FALSE(root->get("list")->items[2]->get("k")->boolean);
  EXPECT_TRUE(root->get("empty_list")->items.empty());
  EXPECT_EQ(root->get("empty_dict")->kind, doctor::PickleValue::Kind::kDict);
  std::size_t copies = 0;
  for (auto at = bytes.find("frame.py"); at != std::string::npos; at = bytes.find("frame.py", at + 1)) ++copies;
  EXPECT_EQ(copies, 1u) << "a repeated string is a memo reference";
}

TEST(TorchFlightRecorder, FileNamesGiveTheRank) {
  using doctor::torch_fr_rank;
  EXPECT_EQ(torch_fr_rank("nccl_trace_rank_7", "nccl_trace_rank_"), 7);
  EXPECT_EQ(torch_fr_rank("nccl_trace_rank_12.json", "nccl_trace_rank_"), 12);
  EXPECT_EQ(torch_fr_rank("fr_3.pkl", "fr_"), 3);
  EXPECT_FALSE(torch_fr_rank("nccl_trace_rank_", "nccl_trace_rank_").has_value());
  EXPECT_FALSE(torch_fr_rank("nccl_trace_rank_x", "nccl_trace_rank_").has_value());
  EXPECT_FALSE(torch_fr_rank("rank-0.json", "nccl_trace_rank_").has_value());
  EXPECT_FALSE(torch_fr_rank("nccl_trace_rank_-1", "nccl_trace_rank_").has_value());
}

}  // namespace
}  // namespace lockstep
