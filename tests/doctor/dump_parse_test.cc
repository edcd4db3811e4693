// The dump reader: strict JSON, version and required-field checks with the
// file and field named, and partial dump sets (missing, truncated, malformed,
// duplicate files) reported without stopping the analysis of the others.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "doctor/dump.h"
#include "doctor/dump_builder.h"
#include "doctor/json_cursor.h"
#include "lockstep/doctor.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

using testing::add_completed;
using testing::dump;
using testing::JobDir;
using testing::json;

std::string parse_error(const std::string& text) {
  doctor::StringTable strings;
  try {
    doctor::parse_dump(text, "rank-1.json", strings);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string with(const std::function<void(json&)>& alter) {
  json d = dump(1, 4);
  add_completed(d, 0, 1);
  alter(d);
  return d.dump();
}

TEST(DumpParse, ReadsEveryDocumentedField) {
  json d = dump(2, 4, "timeout", "timeout", "all_reduce #41", 77);
  add_completed(d, 0, 0);
  d["armed"] = json::array({{{"thread", "comm"}, {"what", "all_reduce"}, {"group", "mesh"}, {"group_seq", 41},
                             {"started_ns", 5}, {"deadline_ns", 6}}});
  d["ledgers"] = {{"mesh", {{"next_seq", 42}, {"digest", "0123abcd"}}}};
  d["counters"] = {{"stale_drops", 3}, {"duplicate_drops", 4}};
  d["future_field"] = {{"nested", json::array({1, 2.5, true, nullptr})}};  // unknown keys are skipped
  doctor::StringTable strings;
  const doctor::Dump p = doctor::parse_dump(d.dump(), "rank-2.json", strings);
  EXPECT_EQ(p.rank, 2);
  EXPECT_EQ(p.world_size, 4);
  EXPECT_EQ(p.pid, 1002);
  EXPECT_EQ(p.reason.kind, doctor::ReasonKind::kTimeout);
  EXPECT_EQ(p.reason.message, "all_reduce #41");
  EXPECT_EQ(p.dumped_at_ns, 77);
  ASSERT_EQ(p.armed.size(), 1u);
  EXPECT_EQ(strings.str(p.armed[0].what), "all_reduce");
  EXPECT_EQ(p.armed[0].group_seq, 41);
  ASSERT_EQ(p.ledgers.size(), 1u);
  EXPECT_EQ(p.ledgers[0].digest, "0123abcd");
  EXPECT_EQ(p.stale_drops, 3);
  EXPECT_EQ(p.duplicate_drops, 4);
  ASSERT_EQ(p.events.size(), 2u);
  EXPECT_EQ(p.events[1].state, EventState::kCompleted);
  EXPECT_EQ(strings.str(p.events[1].group), "mesh");
  EXPECT_EQ(strings.str(p.events[1].dtype), "f32");
  EXPECT_EQ(p.events[1].count, 1024);
}

TEST(DumpParse, ErrorsNameTheFileAndField) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    const std::string error = parse_error(text);
    EXPECT_NE(error.find("rank-1.json"), std::string::npos) << error;
    EXPECT_NE(error.find(needle), std::string::npos) << "want '" << needle << "' in: " << error;
  };
  expect_error(with([](json& d) { d["version"] = 2; }), "version: 2 is not supported");
  expect_error(with([](json& d) { d["format"] = "other"; }), "format");
  expect_error(with([](json& d) { d.erase("rank"); }), "missing required field \"rank\"");
  expect_error(with([](json& d) { d.erase("events"); }), "missing required field \"events\"");
  expect_error(with([](json& d) { d["events"][1]["state"] = "done"; }), "state: unknown value \"done\"");
  expect_error(with([](json& d) { d["events"][1].erase("group_seq"); }), "events[1]: missing required field \"group_seq\"");
  expect_error(with([](json& d) { d["events"][0]["count"] = 1.5; }), "count: expected an integer");
  expect_error(with([](json& d) { d["rank"] = 9; }), "not below world_size");
  expect_error(with([](json& d) { d["reason"].erase("kind"); }), "reason");
  expect_error(with([](json& d) { d["armed"] = json::array({{{"group", "mesh"}}}); }), "armed[0]");
  const std::string good = with([](json&) {});
  expect_error(good.substr(0, good.size() / 2), "truncated");
  expect_error(good + "x", "trailing data");
  expect_error("", "unexpected end of file");
}

TEST(JsonCursor, RejectsMalformedJson) {
  auto fails = [](const std::string& text) {
    doctor::JsonCursor cur(text, "t");
    try {
      cur.skip_value("v");
      cur.expect_end();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kDecode);
      return true;
    }
    return false;
  };
  EXPECT_TRUE(fails("[1,]"));
  EXPECT_TRUE(fails("[,1]"));
  EXPECT_TRUE(fails("{\"a\":1,}"));
  EXPECT_TRUE(fails("{\"a\" 1}"));
  EXPECT_TRUE(fails("\"a\\qb\""));
  EXPECT_TRUE(fails("\"\\ud800\""));
  EXPECT_TRUE(fails("\"tab\there\""));
  EXPECT_TRUE(fails("01"));
  EXPECT_TRUE(fails("1."));
  EXPECT_TRUE(fails("tru"));
  EXPECT_TRUE(fails(std::string(doctor::kJsonNestingMax + 1, '[') + std::string(doctor::kJsonNestingMax + 1, ']')));
  EXPECT_FALSE(fails("{\"a\": [1, -2.5e3, true, false, null, \"x\\u00e9\\ud83d\\ude00\"], \"b\": {}}"));
}

TEST(JsonCursor, DecodesEscapesAndBoundsIntegers) {
  doctor::JsonCursor s("\"a\\n\\\"\\u00e9\\ud83d\\ude00\"", "t");
  EXPECT_EQ(s.read_string("s"), "a\n\"\xC3\xA9\xF0\x9F\x98\x80");
  doctor::JsonCursor lo("-9223372036854775808", "t");
  EXPECT_EQ(lo.read_int("i"), std::numeric_limits<std::int64_t>::min());
  doctor::JsonCursor hi("9223372036854775808", "t");
  EXPECT_THROW(hi.read_int("i"), Error);
}

TEST(DumpLoad, PartialSetIsReportedAndStillAnalysed) {
  JobDir dir;
  for (int r = 0; r < 2; ++r) {
    json d = dump(r, 6);
    add_completed(d, 0, 3);
    dir.write(r, d);
  }
  dir.write_raw(dir.file_for(2), "{\"format\": \"lockstep.flight_recorder\", \"version\": 1, \"rank\": 2, \"ev");
  dir.write_raw(dir.file_for(3), "");
  dir.write_raw(dir.file_for(4), "\x01\x02garbage");
  json wrong_rank = dump(1, 6);
  dir.write(5, wrong_rank);  // says rank 1 inside rank-5.json
  dir.write_raw(dir.dumps() / "rank-01.json", dump(1, 6).dump());  // a second dump for rank 1
  dir.write_raw(dir.dumps() / "notes.txt", "not a dump");
  const Diagnosis d = diagnose(dir.root(), {});
  EXPECT_EQ(d.ranks_present, (std::vector<int>{0, 1}));
  EXPECT_EQ(d.ranks_missing, (std::vector<int>{2, 3, 4, 5}));
  EXPECT_EQ(d.world_size, 6);
  ASSERT_EQ(d.problems.size(), 5u) << format_text(d);
  std::string all;
  for (const DumpProblem& p : d.problems) all += p.message + "\n";
  EXPECT_NE(all.find("rank-2.json"), std::string::npos) << all;
  EXPECT_NE(all.find("truncated"), std::string::npos) << all;
  EXPECT_NE(all.find("rank-3.json: empty file"), std::string::npos) << all;
  EXPECT_NE(all.find("rank-4.json"), std::string::npos) << all;
  EXPECT_NE(all.find("does not match the file name"), std::string::npos) << all;
  EXPECT_NE(all.find("a second dump for rank 1"), std::string::npos) << all;
  EXPECT_NE(format_text(d).find("unusable dump"), std::string::npos);
}

TEST(DumpLoad, DisagreeingWorldSizesAreReported) {
  JobDir dir;
  dir.write(0, dump(0, 2));
  dir.write(1, dump(1, 3));
  const Diagnosis d = diagnose(dir.root(), {});
  EXPECT_EQ(d.world_size, 3);
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_NE(d.problems[0].message.find("world_size"), std::string::npos);
}

}  // namespace
}  // namespace lockstep
