// Doctor verdicts on hand-built dump sets: one test (at least) per verdict
// class, partial and malformed dump sets, ties, and the priority between
// classes. Each asserts the class, the named ranks, group, op and seq.
#include "lockstep/doctor.h"

#include <gtest/gtest.h>

#include <functional>

#include "doctor/dump_builder.h"
#include "lockstep/error.h"

// Calls are written with designated initializers that leave most fields at
// their defaults on purpose; GCC 12 warns about exactly that.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace lockstep {
namespace {

using testing::add_armed;
using testing::add_completed;
using testing::Call;
using testing::dump;
using testing::event;
using testing::JobDir;
using testing::json;

constexpr std::int64_t kSecondNs = 1'000'000'000;

Diagnosis run(const JobDir& dir, int world_size = 0) { return diagnose(dir.root(), DoctorOptions{world_size}); }

bool mentions(const Diagnosis& d, const std::string& text) {
  return format_text(d).find(text) != std::string::npos;
}

// Ranks 0..world-1 all complete all_reduce #0..#last on mesh and exit cleanly.
void write_clean(const JobDir& dir, int world, std::int64_t last) {
  for (int r = 0; r < world; ++r) {
    json d = dump(r, world);
    add_completed(d, 0, last);
    dir.write(r, d);
  }
}

TEST(Doctor, CleanExitIsHealthy) {
  JobDir dir;
  write_clean(dir, 4, 9);
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kHealthy);
  EXPECT_EQ(d.world_size, 4);
  EXPECT_EQ(d.ranks_present, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_TRUE(d.ranks_missing.empty());
  EXPECT_TRUE(d.supporting.empty());
  EXPECT_EQ(format_text(d).rfind("VERDICT: healthy", 0), 0u);
}

// Warm recovery: generation 0 ended with a crash (rank 0 left no dump), the
// job recovered, and generation 1 ended cleanly; launch.json names the last
// generation. The verdict is generation 1's; generation 0's is kept.
TEST(Doctor, ARecoveredJobIsDiagnosedPerGeneration) {
  JobDir dir;
  for (int r = 1; r < 3; ++r) dir.write(r, dump(r, 3, "fatal", "peer_failure", "rank 0 poisoned the job"));
  const std::filesystem::path g1 = dir.root() / "generations" / "g1" / "dumps";
  std::filesystem::create_directories(g1);
  for (int r = 0; r < 3; ++r) {
    json d = dump(r, 3);
    add_completed(d, 0, 4);
    dir.write_raw(g1 / ("rank-" + std::to_string(r) + ".json"), d.dump());
  }
  dir.write_raw(dir.root() / "launch.json", R"({"generation": 1})");
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kHealthy);
  ASSERT_EQ(d.earlier_generations.size(), 1u);
  EXPECT_EQ(d.earlier_generations[0].generation, 0u);
  EXPECT_EQ(d.earlier_generations[0].verdict, Verdict::kCrash);
  EXPECT_TRUE(mentions(d, "generation 0: crash"));
  EXPECT_NE(format_json(d).find("\"earlier_generations\""), std::string::npos);
}

TEST(Doctor, EmptyAndAbsentDirectoriesHaveNoDumps) {
  JobDir dir;
  EXPECT_EQ(run(dir).verdict, Verdict::kNoDumps);
  const Diagnosis absent = diagnose(dir.root() / "does-not-exist", {});
  EXPECT_EQ(absent.verdict, Verdict::kNoDumps);
  ASSERT_EQ(absent.problems.size(), 1u);
  EXPECT_NE(absent.problems[0].message.find("does-not-exist"), std::string::npos);
  EXPECT_EQ(static_cast<int>(Verdict::kNoDumps), 3);
}

TEST(Doctor, AcceptsTheDumpsDirectoryItself) {
  JobDir dir;
  write_clean(dir, 2, 3);
  EXPECT_EQ(diagnose(dir.dumps(), {}).ranks_present, (std::vector<int>{0, 1}));
}

// Ranks 0,1,3 wait in all_reduce #41 on mesh; rank 2 stopped after #40.
void write_hang(const JobDir& dir, bool with_rank2) {
  for (int r = 0; r < 4; ++r) {
    if (r == 2 && !with_rank2) continue;
    json d = dump(r, 4, r == 2 ? "fatal" : "timeout", r == 2 ? "peer_failure" : "timeout", "deadline expired",
                  3 * kSecondNs);
    add_completed(d, 0, 40);
    if (r == 2) {
      d["events"].push_back(event(Call{.op = "decode", .group = "", .seq = -1, .state = "started",
                                       .kind = "stage", .thread = "main", .t_ns = 1'050'000'000}));
    } else {
      d["events"].push_back(event(Call{.seq = 41, .state = "started"}));
      add_armed(d, "all_reduce", "mesh", 41, kSecondNs, 3 * kSecondNs);
    }
    dir.write(r, d);
  }
}

TEST(Doctor, NamesTheRankThatNeverEnteredTheCollective) {
  JobDir dir;
  write_hang(dir, true);
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kHang);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{2}));
  EXPECT_EQ(d.primary.others, (std::vector<int>{0, 1, 3}));
  EXPECT_EQ(d.primary.op, "all_reduce");
  EXPECT_EQ(d.primary.group, "mesh");
  EXPECT_EQ(d.primary.group_seq, 41);
  const std::string text = format_text(d);
  EXPECT_EQ(text.rfind("VERDICT: hang", 0), 0u) << text;
  EXPECT_NE(text.find("rank 2 never entered all_reduce #41 on group mesh; ranks 0,1,3 waited in it (2.0 s)"),
            std::string::npos) << text;
  EXPECT_NE(text.find("decode"), std::string::npos) << "says what rank 2 did instead:\n" << text;
}

TEST(Doctor, RankWithoutADumpIsNamedAsCrashed) {
  JobDir dir;
  write_hang(dir, false);
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kCrash);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{2}));
  EXPECT_EQ(d.primary.op, "all_reduce");
  EXPECT_EQ(d.primary.group_seq, 41);
  EXPECT_EQ(d.ranks_missing, (std::vector<int>{2}));
  EXPECT_TRUE(mentions(d, "[missing_dump] no usable dump from rank 2 of world_size 4"));
}

TEST(Doctor, EveryRankInsideACollectiveThatNeverCompletedIsABackendHang) {
  JobDir dir;
  for (int r = 0; r < 3; ++r) {
    json d = dump(r, 3, "timeout", "timeout", "deadline expired", 5 * kSecondNs);
    add_completed(d, 0, 6);
    d["events"].push_back(event(Call{.seq = 7, .state = "started"}));
    dir.write(r, d);
  }
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kHang);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(d.primary.group_seq, 7);
  EXPECT_TRUE(mentions(d, "backend or transport hang"));
}

// Each rank runs all_reduce #0..#9 on mesh; `alter` changes one rank's calls.
void write_with(const JobDir& dir, int world, const std::function<void(int, json&)>& alter,
                const std::string& reason = "timeout") {
  for (int r = 0; r < world; ++r) {
    json d = dump(r, world, reason, reason, "stopped");
    add_completed(d, 0, 4);
    alter(r, d);
    dir.write(r, d);
  }
}

TEST(Doctor, MismatchNamesTheMinorityRank) {
  JobDir dir;
  write_with(dir, 4, [](int r, json& d) {
    Call c{.seq = 5, .state = "started"};
    if (r == 2) {
      c.op = "broadcast";
      c.peer = 0;
    }
    d["events"].push_back(event(c));
    // A later divergence (rank 1 at #6) must not win over the first one.
    d["events"].push_back(event(Call{.seq = 6, .state = "started", .dtype = r == 1 ? "f16" : "f32"}));
  });
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kMismatch);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{2}));
  EXPECT_EQ(d.primary.others, (std::vector<int>{0, 1, 3}));
  EXPECT_EQ(d.primary.op, "broadcast");
  EXPECT_EQ(d.primary.group, "mesh");
  EXPECT_EQ(d.primary.group_seq, 5);
  EXPECT_TRUE(mentions(d, "rank 2 called broadcast(f32 x1024, root 0)"));
  EXPECT_TRUE(mentions(d, "ranks 0,1,3 called all_reduce(f32 x1024)"));
}

TEST(Doctor, MismatchOnDtypeOrCount) {
  JobDir dir;
  write_with(dir, 3, [](int r, json& d) {
    d["events"].push_back(event(Call{.seq = 5, .state = "started", .dtype = r == 0 ? "bf16" : "f32"}));
  });
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kMismatch);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{0}));
  EXPECT_EQ(d.primary.group_seq, 5);
}

TEST(Doctor, OneToOneTieNamesBothRanks) {
  JobDir dir;
  write_with(dir, 2, [](int r, json& d) {
    d["events"].push_back(event(Call{.seq = 5, .state = "started", .count = r == 0 ? 1024 : 2048}));
  });
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kMismatch);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{0, 1}));
  EXPECT_TRUE(d.primary.others.empty());
  EXPECT_TRUE(mentions(d, "no majority"));
}

TEST(Doctor, TwoToTwoTieNamesEveryRank) {
  JobDir dir;
  write_with(dir, 4, [](int r, json& d) {
    d["events"].push_back(event(Call{.op = r < 2 ? "all_reduce" : "all_gather", .seq = 5, .state = "started"}));
  });
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kMismatch);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{0, 1, 2, 3}));
}

TEST(Doctor, P2pPairWithDifferentSizesIsAMismatch) {
  JobDir dir;
  write_with(dir, 2, [](int r, json& d) {
    d["events"].push_back(event(Call{.op = r == 0 ? "send" : "recv", .group = "pp", .seq = 0, .state = "started",
                                     .count = r == 0 ? 10 : 20, .peer = 1 - r, .kind = "p2p"}));
  });
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kMismatch);
  EXPECT_EQ(d.primary.group, "pp");
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{0, 1}));
}

TEST(Doctor, MatchingP2pPairIsNotAMismatch) {
  JobDir dir;
  for (int r = 0; r < 2; ++r) {
    json d = dump(r, 2);
    add_completed(d, 0, 3, Call{.op = r == 0 ? "send" : "recv", .group = "pp", .peer = 1 - r, .kind = "p2p"});
    dir.write(r, d);
  }
  EXPECT_EQ(run(dir).verdict, Verdict::kHealthy);
}

TEST(Doctor, MissingParticipantWithoutAnyWaiter) {
  JobDir dir;
  for (int r = 0; r < 4; ++r) {
    json d = r == 3 ? dump(r, 4, "exit") : dump(r, 4, "fatal", "backend", "connection reset");
    add_completed(d, 0, r == 3 ? 7 : 9);
    dir.write(r, d);
  }
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kMissingParticipant);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{3}));
  EXPECT_EQ(d.primary.others, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(d.primary.group_seq, 8);
  EXPECT_EQ(d.primary.op, "all_reduce");
}

TEST(Doctor, WrongGroupFromAFailedEvent) {
  JobDir dir;
  write_with(dir, 3, [](int r, json& d) {
    if (r != 0) return;
    d["reason"] = {{"kind", "fatal"}, {"code", "membership"}, {"message", "rank 0 is not in group mesh"}};
    d["events"].push_back(event(Call{.seq = 5, .state = "failed",
                                     .detail = "membership: rank 0 is not in group mesh"}));
  }, "fatal");
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kWrongGroup);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{0}));
  EXPECT_EQ(d.primary.group, "mesh");
  EXPECT_EQ(d.primary.op, "all_reduce");
  EXPECT_EQ(d.primary.group_seq, 5);
}

TEST(Doctor, WrongGroupFromAPhaseReason) {
  JobDir dir;
  write_with(dir, 2, [](int r, json& d) {
    if (r == 1) d["reason"] = {{"kind", "fatal"}, {"code", "phase"}, {"message", "world inside generator"}};
  }, "exit");
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kWrongGroup);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{1}));
}

// Rank `culprit` states `code`; the others report the poison.
Diagnosis with_reason(const std::string& code, int culprit) {
  JobDir dir;
  write_with(dir, 3, [&](int r, json& d) {
    if (r == culprit) d["reason"] = {{"kind", "fatal"}, {"code", code}, {"message", "differs"}};
    else d["reason"] = {{"kind", "fatal"}, {"code", "peer_failure"}, {"message", "poisoned"}};
  });
  return run(dir);
}

TEST(Doctor, ReasonCodesMapToTheirClasses) {
  EXPECT_EQ(with_reason("plan", 1).verdict, Verdict::kPlanMismatch);
  EXPECT_EQ(with_reason("parity", 2).verdict, Verdict::kParity);
  EXPECT_EQ(with_reason("digest", 0).verdict, Verdict::kDigest);
  EXPECT_EQ(with_reason("ledger", 0).verdict, Verdict::kDigest);
  EXPECT_EQ(with_reason("checksum", 1).verdict, Verdict::kProtocol);
  EXPECT_EQ(with_reason("stale_work", 1).verdict, Verdict::kProtocol);
  const Diagnosis plan = with_reason("plan", 1);
  EXPECT_EQ(plan.primary.ranks, (std::vector<int>{1}));
  EXPECT_EQ(static_cast<int>(plan.verdict), 14);
}

TEST(Doctor, EarliestStatementComesFirst) {
  JobDir dir;
  write_with(dir, 3, [](int r, json& d) {
    if (r == 1) return;
    d["reason"] = {{"kind", "fatal"}, {"code", "parity"}, {"message", "graph_capture differs"}};
    d["dumped_at_ns"] = r == 2 ? 5 : 9;
  });
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kParity);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{2, 0}));
}

TEST(Doctor, MismatchOutranksTheLedgerCheckItCaused) {
  JobDir dir;
  write_with(dir, 3, [](int r, json& d) {
    d["reason"] = {{"kind", "fatal"}, {"code", "ledger"}, {"message", "ledger digests differ"}};
    d["events"].push_back(event(Call{.op = r == 1 ? "all_gather" : "all_reduce", .seq = 5}));
  }, "fatal");
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kMismatch);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{1}));
  ASSERT_FALSE(d.supporting.empty());
  EXPECT_EQ(d.supporting[0].kind, "digest");
}

// Rank 0 passes the header commit of call 7 on pp, then fails; rank 1 waits.
void write_stranded(const JobDir& dir, bool payload_arrived) {
  json sender = dump(0, 2, "fatal", "internal", "threw after the header");
  add_completed(sender, 0, 2, Call{.op = "send", .group = "pp", .peer = 1, .kind = "p2p"});
  sender["events"].push_back(event(Call{.op = "header_sent", .group = "pp", .seq = -1, .state = "completed",
                                        .peer = 1, .call_id = 7, .kind = "commit", .t_ns = 2'000'000'000}));
  sender["events"].push_back(event(Call{.op = "preflight_late", .group = "", .seq = -1, .state = "failed",
                                        .kind = "note", .detail = "internal: threw", .t_ns = 2'100'000'000}));
  dir.write(0, sender);
  json receiver = dump(1, 2, "timeout", "timeout", "recv deadline");
  add_completed(receiver, 0, 2, Call{.op = "recv", .group = "pp", .peer = 0, .kind = "p2p"});
  receiver["events"].push_back(event(Call{.op = "recv", .group = "pp", .seq = 3,
                                          .state = payload_arrived ? "completed" : "started", .peer = 0,
                                          .call_id = 7, .kind = "p2p", .t_ns = 2'050'000'000}));
  dir.write(1, receiver);
}

TEST(Doctor, StrandedCommitmentPoint) {
  JobDir dir;
  write_stranded(dir, false);
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kStrandedCommit);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{0}));
  EXPECT_EQ(d.primary.others, (std::vector<int>{1}));
  EXPECT_EQ(d.primary.op, "header_sent");
  EXPECT_EQ(d.primary.group, "pp");
  EXPECT_TRUE(mentions(d, "call_id 7"));
}

TEST(Doctor, CommitWhosePayloadArrivedIsNotStranded) {
  JobDir dir;
  write_stranded(dir, true);
  EXPECT_NE(run(dir).verdict, Verdict::kStrandedCommit);
}

TEST(Doctor, FirstFailureNamesWhoPoisonedWhom) {
  JobDir dir;
  write_with(dir, 3, [](int r, json& d) {
    if (r == 1) {
      d["reason"] = {{"kind", "fatal"}, {"code", "backend"}, {"message", "gloo: connection closed"}};
      d["dumped_at_ns"] = 100;
    } else {
      d["reason"] = {{"kind", "fatal"}, {"code", "peer_failure"}, {"message", "poison/1"}};
      d["dumped_at_ns"] = 200 + r;
    }
  });
  const Diagnosis d = run(dir);
  EXPECT_EQ(d.verdict, Verdict::kCrash);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{1}));
  EXPECT_EQ(d.primary.others, (std::vector<int>{0, 2}));
  EXPECT_TRUE(mentions(d, "rank 1 failed first (fatal backend: gloo: connection closed)"));
}

TEST(Doctor, EachCauseIsStatedOnce) {
  // The dump's message starts with the code (lockstep::Error's text) and the
  // reason kind equals the code: the verdict says "timeout" once.
  JobDir dir;
  write_with(dir, 2, [](int r, json& d) {
    d["reason"] = r == 0 ? json{{"kind", "timeout"}, {"code", "timeout"}, {"message", "timeout: nccl all_reduce #3 on mesh"}}
                         : json{{"kind", "fatal"}, {"code", "peer_failure"}, {"message", "peer_failure: poison/0"}};
  });
  const Diagnosis d = run(dir);
  const std::string text = format_text(d);
  EXPECT_NE(text.find("(timeout: nccl all_reduce #3 on mesh)"), std::string::npos) << text;
  EXPECT_EQ(text.find("timeout timeout"), std::string::npos) << text;
  EXPECT_EQ(text.find("timeout: timeout"), std::string::npos) << text;
}

TEST(Doctor, ALostConnectionToARankWithoutADumpBlamesThatRank) {
  // kill -9 of rank 2: rank 1's next collective fails on the reset
  // connection and dumps first; the killed rank is still the cause.
  JobDir dir;
  write_with(dir, 3, [](int r, json& d) {
    if (r == 1) {
      d["reason"] = {{"kind", "fatal"},
                     {"code", "backend"},
                     {"message", "group 'world' seq 0: [pair.cc:538] Read error: Connection reset by peer"}};
      d["dumped_at_ns"] = 100;
    } else {
      d["reason"] = {{"kind", "fatal"}, {"code", "peer_failure"}, {"message", "poison/1"}};
      d["dumped_at_ns"] = 200;
    }
  });
  std::filesystem::remove(dir.root() / "dumps" / "rank-2.json");
  const Diagnosis d = run(dir, 3);
  EXPECT_EQ(d.verdict, Verdict::kCrash);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{2}));
  EXPECT_TRUE(mentions(d, "rank 2 left no dump (crashed or killed)")) << format_text(d);
}

TEST(Doctor, StaleDropsAreASupportingFinding) {
  JobDir dir;
  write_clean(dir, 2, 3);
  json d = dump(0, 2);
  add_completed(d, 0, 3);
  d["counters"] = {{"stale_drops", 3}, {"duplicate_drops", 1}};
  dir.write(0, d);
  const Diagnosis diag = run(dir);
  EXPECT_EQ(diag.verdict, Verdict::kHealthy);
  ASSERT_EQ(diag.supporting.size(), 1u);
  EXPECT_EQ(diag.supporting[0].kind, "stale_drops");
  EXPECT_EQ(diag.supporting[0].ranks, (std::vector<int>{0}));
  EXPECT_TRUE(mentions(diag, "rank 0 dropped 3 stale and 1 duplicate results"));
}

TEST(Doctor, RequestedSnapshotsInFlightAreHealthy) {
  JobDir dir;
  write_with(dir, 2, [](int r, json& d) {
    if (r == 0) d["events"].push_back(event(Call{.seq = 5, .state = "started"}));
  }, "request");
  EXPECT_EQ(run(dir).verdict, Verdict::kHealthy);
}

TEST(Doctor, WorldSizeOptionRevealsMissingRanks) {
  JobDir dir;
  write_clean(dir, 2, 3);
  const Diagnosis d = run(dir, 4);
  EXPECT_EQ(d.world_size, 4);
  EXPECT_EQ(d.ranks_missing, (std::vector<int>{2, 3}));
  EXPECT_THROW(diagnose(dir.root(), DoctorOptions{-1}), Error);
}

// C4 as the producer writes it: rank 2 stopped in a stage (SIGSTOP) and never
// entered all_reduce #41; ranks 0 and 1 timed out in it.
TEST(Doctor, HandWrittenFixtureOfAStoppedRank) {
  const Diagnosis d = diagnose(std::filesystem::path(LOCKSTEP_DOCTOR_FIXTURES) / "c4_sigstop", {});
  EXPECT_TRUE(d.problems.empty()) << format_text(d);
  EXPECT_EQ(d.verdict, Verdict::kHang);
  EXPECT_EQ(d.primary.ranks, (std::vector<int>{2}));
  EXPECT_EQ(d.primary.others, (std::vector<int>{0, 1}));
  EXPECT_EQ(d.primary.op, "all_reduce");
  EXPECT_EQ(d.primary.group_seq, 41);
  EXPECT_TRUE(mentions(d, "attention_block")) << format_text(d);
}

TEST(Doctor, JsonCarriesTheSameVerdict) {
  JobDir dir;
  write_hang(dir, true);
  const json j = json::parse(format_json(run(dir)));
  EXPECT_EQ(j["verdict"], "hang");
  EXPECT_EQ(j["exit_status"], 10);
  EXPECT_EQ(j["primary"]["ranks"], json::array({2}));
  EXPECT_EQ(j["primary"]["group_seq"], 41);
  EXPECT_EQ(j["ranks_present"].size(), 4u);
}

}  // namespace
}  // namespace lockstep
