#include "lockstep/parity.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <thread>

#include "guard/fakes.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

ParityInputs reference_inputs() {
  ParityInputs in;
  in.topology = "pp1";
  in.world_size = 3;
  in.plan_id = "plan-a";
  in.group_table_digest = 0x1234;
  in.model_config_digest = 0xabcd;
  in.dtype = "bf16";
  in.resolved = {{"backend.mesh", "gloo"}, {"kernel.attention", "blocked"}};
  in.gating_flags = {{"kv_recompute", "true"}};
  return in;
}

std::vector<ParityRecord> records_with(int differing_rank, const ParityInputs& differing) {
  std::vector<ParityRecord> records;
  for (int r = 0; r < 3; ++r) {
    records.push_back(make_parity_record(r, r == differing_rank ? differing : reference_inputs()));
  }
  return records;
}

Error error_of(const std::vector<ParityRecord>& records) {
  try {
    check_parity(records);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "check_parity accepted differing records";
  return Error(ErrorCode::kInternal, "none");
}

TEST(Parity, RecordCarriesEveryDeclaredClass) {
  const ParityRecord r = make_parity_record(0, reference_inputs());
  for (const char* key : {"topology", "world_size", "plan_id", "group_table_digest",
                          "model_config_digest", "dtype", "graph_capture", "compiled_mode",
                          "resolved.backend.mesh", "resolved.kernel.attention", "flag.kv_recompute"}) {
    EXPECT_EQ(r.fields.count(key), 1u) << key;
  }
  EXPECT_EQ(r.fields.at("group_table_digest"), "0000000000001234");
}

TEST(Parity, EncodingIsCanonicalAndRoundTrips) {
  ParityInputs a = reference_inputs();
  ParityInputs b = reference_inputs();
  b.resolved.clear();  // same pairs inserted in the other order
  b.resolved["kernel.attention"] = "blocked";
  b.resolved["backend.mesh"] = "gloo";
  const Bytes bytes_a = encode_parity_record(make_parity_record(1, a));
  EXPECT_EQ(bytes_a, encode_parity_record(make_parity_record(1, b)));
  EXPECT_EQ(decode_parity_record(bytes_a, 1), make_parity_record(1, a));
}

TEST(Parity, DecodeRejectsGarbageAndAnotherRanksRecord) {
  const Bytes garbage = {'{', 'x'};
  EXPECT_THROW(decode_parity_record(garbage, 0), Error);
  const Bytes other = encode_parity_record(make_parity_record(2, reference_inputs()));
  try {
    decode_parity_record(other, 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDecode);
  }
}

TEST(Parity, EqualRecordsNegotiateTheHighestCommonVersion) {
  auto records = records_with(-1, reference_inputs());
  records[1].protocol = VersionRange{1, 1};
  EXPECT_EQ(check_parity(records), 1);
  EXPECT_TRUE(parity_diff_table(records).empty());
}

TEST(Parity, GraphCaptureOnOneRankIsNamedInTheTable) {
  ParityInputs g1 = reference_inputs();
  g1.graph_capture = true;
  const Error e = error_of(records_with(2, g1));
  EXPECT_EQ(e.code(), ErrorCode::kParity);
  const std::string table = parity_diff_table(records_with(2, g1));
  // Only the differing key, with a value per rank.
  EXPECT_NE(table.find("key"), std::string::npos);
  EXPECT_NE(table.find("rank 2"), std::string::npos);
  EXPECT_NE(table.find("graph_capture"), std::string::npos);
  EXPECT_NE(table.find("true"), std::string::npos);
  EXPECT_EQ(table.find("plan_id"), std::string::npos);
  EXPECT_NE(std::string(e.what()).find(table), std::string::npos);
}

TEST(Parity, GroupTableDigestDifferenceIsNamed) {
  ParityInputs b3 = reference_inputs();
  b3.group_table_digest = 0x4321;
  const Error e = error_of(records_with(1, b3));
  EXPECT_EQ(e.code(), ErrorCode::kParity);
  EXPECT_NE(std::string(e.what()).find("group_table_digest"), std::string::npos);
  EXPECT_NE(std::string(e.what()).find("0000000000004321"), std::string::npos);
}

TEST(Parity, DeclaredEnvironmentKeyIsCompared) {
  ParityInputs with_env = reference_inputs();
  with_env.parity_env = {"LOCKSTEP_TEST_PARITY_KNOB"};
  unsetenv("LOCKSTEP_TEST_PARITY_KNOB");
  std::vector<ParityRecord> records;
  records.push_back(make_parity_record(0, with_env));
  setenv("LOCKSTEP_TEST_PARITY_KNOB", "fast", 1);
  records.push_back(make_parity_record(1, with_env));
  unsetenv("LOCKSTEP_TEST_PARITY_KNOB");
  EXPECT_EQ(records[0].fields.at("env.LOCKSTEP_TEST_PARITY_KNOB"), kParityEnvUnset);
  const Error e = error_of(records);
  EXPECT_NE(std::string(e.what()).find("env.LOCKSTEP_TEST_PARITY_KNOB"), std::string::npos);
  EXPECT_NE(std::string(e.what()).find("fast"), std::string::npos);
}

TEST(Parity, KeyPresentOnOneRankOnlyIsMissingElsewhere) {
  ParityInputs extra = reference_inputs();
  extra.gating_flags["debug_barrier"] = "on";
  const std::string table = parity_diff_table(records_with(0, extra));
  EXPECT_NE(table.find("flag.debug_barrier"), std::string::npos);
  EXPECT_NE(table.find("<missing>"), std::string::npos);
}

TEST(Parity, ProtocolRangesWithoutOverlapRefuseWithVersionError) {
  auto records = records_with(-1, reference_inputs());
  records[2].protocol = VersionRange{3, 3};
  const Error e = error_of(records);
  EXPECT_EQ(e.code(), ErrorCode::kVersion);
  EXPECT_NE(std::string(e.what()).find("rank 2"), std::string::npos) << e.what();
}

TEST(Parity, LongValuesAreCutInTheTableOnly) {
  ParityInputs long_value = reference_inputs();
  long_value.plan_id = std::string(200, 'x');
  const std::string table = parity_diff_table(records_with(1, long_value));
  EXPECT_NE(table.find(std::string(kParityCellBytesMax - 3, 'x') + "..."), std::string::npos);
  EXPECT_EQ(table.find(std::string(kParityCellBytesMax + 1, 'x')), std::string::npos);
}

TEST(Parity, LimitsAreEnforcedNamingTheKey) {
  ParityInputs huge = reference_inputs();
  huge.gating_flags["big"] = std::string(kParityValueBytesMax + 1, 'v');
  try {
    make_parity_record(0, huge);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kLimit);
    EXPECT_NE(std::string(e.what()).find("flag.big"), std::string::npos);
  }
}

TEST(ParityExchange, EveryRankReachesTheSameVerdictThroughTheStore) {
  test::MemoryStore store;
  ParityInputs g1 = reference_inputs();
  g1.graph_capture = true;
  std::vector<std::string> messages(3);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 3; ++r) {
    ranks.emplace_back([&, r] {
      try {
        exchange_parity(store, make_parity_record(r, r == 1 ? g1 : reference_inputs()), 3,
                        std::chrono::milliseconds(5000));
      } catch (const Error& e) {
        messages[r] = e.what();
      }
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_NE(messages[0].find("graph_capture"), std::string::npos);
  EXPECT_EQ(messages[0], messages[1]);
  EXPECT_EQ(messages[1], messages[2]);
}

TEST(ParityExchange, NamesRanksThatNeverPublished) {
  test::MemoryStore store;
  try {
    exchange_parity(store, make_parity_record(0, reference_inputs()), 3, std::chrono::milliseconds(50));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(e.what()).find("[1, 2]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lockstep
