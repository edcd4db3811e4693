// The restricted pickle reader on pickles made by CPython's own pickle
// (fixtures/pickle/make_pickles.py) and on hand-made byte strings: plain
// values in protocols 2-5 are read exactly; code, objects, sets, cycles,
// nesting past the bound and truncated input are refused, naming why.
#include "doctor/pickle_reader.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "lockstep/error.h"

namespace lockstep::doctor {
namespace {

using Kind = PickleValue::Kind;

std::vector<std::uint8_t> fixture(const std::string& name) {
  std::ifstream in(std::string(LOCKSTEP_PICKLE_FIXTURES) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Error refusal(const std::vector<std::uint8_t>& bytes, const PickleLimits& limits = {}) {
  try {
    read_pickle(bytes, limits);
  } catch (const Error& error) {
    return error;
  }
  ADD_FAILURE() << "the pickle was accepted";
  return Error(ErrorCode::kInternal, "accepted");
}

TEST(PickleReader, ReadsAFlightRecorderShapedDumpInEveryProtocol) {
  for (const char* name : {"fr-p2.pkl", "fr-p3.pkl", "fr-p4.pkl", "fr-p5.pkl"}) {
    SCOPED_TRACE(name);
    const PickleValue::Ref dump = read_pickle(fixture(name));
    ASSERT_EQ(dump->kind, Kind::kDict);
    EXPECT_EQ(dump->get("version")->text, "2.10");
    EXPECT_EQ(dump->get("pg_config")->get("0")->get("ranks")->text, "[0, 1]");
    EXPECT_EQ(dump->get("pg_status")->get("0")->get("last_completed_collective")->integer, 6);
    EXPECT_EQ(dump->get("big")->integer, std::int64_t{1} << 40);
    EXPECT_EQ(dump->get("negative_big")->integer, -(std::int64_t{1} << 40));
    const PickleValue* entries = dump->get("entries");
    ASSERT_TRUE(entries != nullptr && entries->kind == Kind::kList);
    ASSERT_EQ(entries->items.size(), 2u);
    const PickleValue& first = *entries->items[0];
    EXPECT_EQ(first.get("profiling_name")->text, "nccl:all_reduce");
    const PickleValue* group = first.get("process_group");
    ASSERT_EQ(group->kind, Kind::kTuple);
    EXPECT_EQ(group->items[1]->text, "default_pg");
    const PickleValue* sizes = first.get("input_sizes");
    ASSERT_EQ(sizes->items.size(), 1u);
    EXPECT_EQ(sizes->items[0]->items[1]->integer, 5120);
    EXPECT_EQ(first.get("time_created_ns")->integer, 1764230400123456789);
    EXPECT_EQ(first.get("is_p2p")->kind, Kind::kBool);
    EXPECT_FALSE(first.get("is_p2p")->boolean);
    EXPECT_EQ(first.get("duration_ms")->kind, Kind::kNone);
    const PickleValue& second = *entries->items[1];
    EXPECT_DOUBLE_EQ(second.get("duration_ms")->real, 0.25);
    EXPECT_EQ(second.get("time_created_ns")->integer, -5);
    EXPECT_TRUE(second.get("retired")->boolean);
    // One list object shared by both entries through the memo.
    EXPECT_EQ(first.get("frames"), second.get("frames"));
    EXPECT_EQ(first.get("frames")->items[0]->get("line")->integer, 42);
    const PickleValue* version = dump->get("nccl_version");
    EXPECT_EQ(version->text, "2.28.9");
    EXPECT_EQ(version->kind, std::string(name) == "fr-p2.pkl" ? Kind::kStr : Kind::kBytes);
  }
}

TEST(PickleReader, RefusesCodeObjectsAndSetsNamingTheOpcode) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"refused-global.pkl", "GLOBAL refused"},
      {"refused-stack-global.pkl", "STACK_GLOBAL refused"},
      {"refused-reduce.pkl", "GLOBAL refused"},  // the callable comes first
      {"refused-set.pkl", "EMPTY_SET refused"},
      {"refused-protocol0.pkl", "(protocol 0) refused"},
  };
  for (const auto& [name, why] : cases) {
    const Error error = refusal(fixture(name));
    EXPECT_EQ(error.code(), ErrorCode::kDecode) << name;
    EXPECT_NE(std::string(error.what()).find(why), std::string::npos) << name << ": " << error.what();
    EXPECT_NE(std::string(error.what()).find("pickle offset "), std::string::npos) << error.what();
  }
  // REDUCE alone (its callable already on the stack) is refused too.
  const Error reduce = refusal({0x80, 0x02, 'N', ')', 'R', '.'});
  EXPECT_NE(std::string(reduce.what()).find("REDUCE refused"), std::string::npos) << reduce.what();
}

TEST(PickleReader, RefusesCyclesAndNestingPastTheBound) {
  const Error cycle = refusal(fixture("refused-cycle.pkl"));
  EXPECT_EQ(cycle.code(), ErrorCode::kDecode);
  EXPECT_NE(std::string(cycle.what()).find("reference cycle"), std::string::npos) << cycle.what();
  const Error deep = refusal(fixture("refused-deep.pkl"));
  EXPECT_EQ(deep.code(), ErrorCode::kLimit);
  EXPECT_NE(std::string(deep.what()).find("deeper than 64"), std::string::npos) << deep.what();
  PickleLimits roomy;
  roomy.depth_max = 200;
  EXPECT_EQ(read_pickle(fixture("refused-deep.pkl"), roomy)->kind, Kind::kList);
}

TEST(PickleReader, EveryOtherBoundIsEnforced) {
  const std::vector<std::uint8_t> dump = fixture("fr-p4.pkl");
  PickleLimits tight;
  tight.bytes_max = dump.size() - 1;
  EXPECT_EQ(refusal(dump, tight).code(), ErrorCode::kLimit);
  tight = {};
  tight.values_max = 10;
  EXPECT_EQ(refusal(dump, tight).code(), ErrorCode::kLimit);
  tight = {};
  tight.string_bytes_max = 4;
  EXPECT_EQ(refusal(dump, tight).code(), ErrorCode::kLimit);
  // A 9-byte integer (LONG1) does not fit the int64 every dump field is.
  EXPECT_EQ(refusal({0x80, 0x02, 0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, '.'}).code(), ErrorCode::kLimit);
}

TEST(PickleReader, MalformedInputIsADecodeErrorNeverARead) {
  const std::vector<std::uint8_t> dump = fixture("fr-p3.pkl");
  for (std::size_t cut = 0; cut < dump.size(); ++cut) {
    const std::vector<std::uint8_t> prefix(dump.begin(), dump.begin() + static_cast<std::ptrdiff_t>(cut));
    EXPECT_EQ(refusal(prefix).code(), ErrorCode::kDecode) << "cut at " << cut;
  }
  EXPECT_NE(std::string(refusal({0x80, 0x02, 'a', '.'}).what()).find("stack underflow"), std::string::npos);
  EXPECT_NE(std::string(refusal({0x80, 0x02, 'h', 3, '.'}).what()).find("memo entry 3 was never put"),
            std::string::npos);
  EXPECT_NE(std::string(refusal({0x80, 0x02, '}', ']', 'N', 's', '.'}).what()).find("unhashable dict key"),
            std::string::npos);
  EXPECT_NE(std::string(refusal({0x80, 0x09, 'N', '.'}).what()).find("protocol 9"), std::string::npos);
  EXPECT_NE(std::string(refusal({0x80, 0x02, 0xff}).what()).find("unknown opcode 0xff"), std::string::npos);
  EXPECT_NE(std::string(refusal({0x80, 0x02, 'N', 'N', '.'}).what()).find("STOP with 2 values"), std::string::npos);
}

}  // namespace
}  // namespace lockstep::doctor
