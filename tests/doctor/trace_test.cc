// `lockstep trace` output: valid JSON in Chrome trace-event format, one pid per
// rank, one tid per recorder thread, spans for calls and stages, instants for
// commit points, failures marked.
#include "lockstep/trace.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>

#include "doctor/dump_builder.h"
#include "lockstep/error.h"

// Calls are written with designated initializers that leave most fields at
// their defaults on purpose; GCC 12 warns about exactly that.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace lockstep {
namespace {

using testing::add_completed;
using testing::Call;
using testing::dump;
using testing::event;
using testing::JobDir;
using testing::json;

struct Written {
  TraceSummary summary;
  json trace;
};

Written write(const JobDir& dir) {
  std::ostringstream out;
  Written w;
  w.summary = write_trace(dir.root(), out);
  w.trace = json::parse(out.str());  // throws (fails the test) on invalid JSON
  return w;
}

std::vector<json> with_ph(const json& trace, const std::string& ph) {
  std::vector<json> out;
  for (const json& e : trace["traceEvents"]) {
    if (e["ph"] == ph) out.push_back(e);
  }
  return out;
}

// Two ranks: 3 completed all_reduces on "comm", a stage on "main"; rank 1
// also has a commit point and a failed all_reduce #3.
void write_job(const JobDir& dir) {
  for (int r = 0; r < 2; ++r) {
    json d = dump(r, 2, r == 1 ? "fatal" : "exit", r == 1 ? "backend" : "", "");
    add_completed(d, 0, 2);
    d["events"].push_back(event(Call{.op = "decode", .group = "", .seq = -1, .state = "started", .kind = "stage",
                                     .thread = "main", .t_ns = 1'100'000'000}));
    d["events"].push_back(event(Call{.op = "decode", .group = "", .seq = -1, .state = "completed", .kind = "stage",
                                     .thread = "main", .t_ns = 1'200'000'000}));
    if (r == 1) {
      d["events"].push_back(event(Call{.op = "header_sent", .seq = -1, .kind = "commit", .t_ns = 1'300'000'000}));
      d["events"].push_back(event(Call{.seq = 3, .state = "started", .t_ns = 1'400'000'000}));
      d["events"].push_back(event(Call{.seq = 3, .state = "failed", .detail = "backend: reset",
                                       .t_ns = 1'500'000'000}));
    }
    dir.write(r, d);
  }
}

TEST(Trace, OneProcessPerRankOneThreadPerRecorderThread) {
  JobDir dir;
  write_job(dir);
  const Written w = write(dir);
  EXPECT_EQ(w.summary.ranks, (std::vector<int>{0, 1}));
  EXPECT_TRUE(w.summary.problems.empty());
  EXPECT_EQ(w.summary.events_written, w.trace["traceEvents"].size());
  std::map<int, std::string> process;
  std::map<std::pair<int, int>, std::string> thread;
  for (const json& m : with_ph(w.trace, "M")) {
    if (m["name"] == "process_name") process[m["pid"]] = m["args"]["name"];
    if (m["name"] == "thread_name") thread[{m["pid"], m["tid"]}] = m["args"]["name"];
  }
  EXPECT_EQ(process, (std::map<int, std::string>{{0, "rank 0 (leader)"}, {1, "rank 1 (worker)"}}));
  const std::map<std::pair<int, int>, std::string> want{
      {{0, 1}, "comm"}, {{0, 2}, "main"}, {{1, 1}, "comm"}, {{1, 2}, "main"}};
  EXPECT_EQ(thread, want);
}

TEST(Trace, CallsAndStagesAreSpansCommitsAreInstants) {
  JobDir dir;
  write_job(dir);
  const Written w = write(dir);
  const std::vector<json> spans = with_ph(w.trace, "X");
  // 3 all_reduces + 1 stage per rank, plus rank 1's failed all_reduce #3.
  ASSERT_EQ(spans.size(), 9u);
  int failed = 0;
  for (const json& s : spans) {
    const int tid = s["tid"];
    EXPECT_EQ(tid, s["cat"] == "stage" ? 2 : 1) << s;
    EXPECT_GE(s["dur"].get<double>(), 0.0);
    if (s["args"]["state"] == "failed") {
      ++failed;
      EXPECT_EQ(s["name"], "all_reduce #3");
      EXPECT_EQ(s["pid"], 1);
      EXPECT_EQ(s["args"]["error"], "backend: reset");
      EXPECT_EQ(s["cname"], "terrible");
      EXPECT_DOUBLE_EQ(s["dur"].get<double>(), 100'000.0);  // 100 ms in us
    }
  }
  EXPECT_EQ(failed, 1);
  std::set<std::string> instants;
  for (const json& i : with_ph(w.trace, "i")) instants.insert(i["name"].get<std::string>());
  EXPECT_TRUE(instants.count("header_sent"));
  EXPECT_TRUE(instants.count("dump: fatal backend"));
  // The earliest event of any rank is time zero.
  double first_ts = 1e300;
  for (const json& s : spans) first_ts = std::min(first_ts, s["ts"].get<double>());
  EXPECT_DOUBLE_EQ(first_ts, 0.0);
}

TEST(Trace, UnfinishedCallsRunToTheDumpAndBadDumpsAreListed) {
  JobDir dir;
  json d = dump(0, 2, "timeout", "timeout", "", 3'000'000'000);
  d["events"].push_back(event(Call{.seq = 0, .state = "started", .t_ns = 1'000'000'000}));
  dir.write(0, d);
  dir.write_raw(dir.file_for(1), "{");
  const Written w = write(dir);
  ASSERT_EQ(w.summary.problems.size(), 1u);
  EXPECT_NE(w.summary.problems[0].find("rank-1.json"), std::string::npos);
  const std::vector<json> spans = with_ph(w.trace, "X");
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0]["args"]["state"], "unfinished");
  EXPECT_DOUBLE_EQ(spans[0]["dur"].get<double>(), 2'000'000.0);
}

TEST(Trace, EmptyDirectoryGivesAnEmptyValidTrace) {
  JobDir dir;
  const Written w = write(dir);
  EXPECT_TRUE(w.trace["traceEvents"].empty());
  EXPECT_TRUE(w.summary.ranks.empty());
}

}  // namespace
}  // namespace lockstep
