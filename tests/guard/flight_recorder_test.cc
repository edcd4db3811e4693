#include "lockstep/flight_recorder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "guard/fakes.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

using test::FakeClock;

EventSpec collective(std::uint64_t group_seq, std::int64_t count) {
  EventSpec spec;
  spec.kind = EventKind::kCollective;
  spec.state = EventState::kStarted;
  spec.group = "mesh";
  spec.op = "all_reduce";
  spec.group_seq = group_seq;
  spec.count = count;
  spec.dtype = static_cast<std::uint8_t>(DType::kF32);
  return spec;
}

TEST(FlightRecorder, RejectsSizesOutsideTheLimitsOrNotPowersOfTwo) {
  EXPECT_THROW(FlightRecorder(kFlightRecorderEventsMin / 2), Error);
  EXPECT_THROW(FlightRecorder(kFlightRecorderEventsMax * 2), Error);
  EXPECT_THROW(FlightRecorder(100), Error);
  EXPECT_EQ(FlightRecorder().events_max(), kFlightRecorderEventsDefault);
}

TEST(FlightRecorder, StampsTimeThreadContextAndPhase) {
  FakeClock clock;
  FlightRecorder recorder(64, clock);
  FlightRecorder::name_this_thread("comm");
  recorder.set_context(7, 6, 1);
  recorder.set_phase("generator");
  recorder.record(collective(41, 1024));
  clock.advance(std::chrono::milliseconds(3));
  recorder.commit("header_sent", "boundary", "call 7");

  const auto events = recorder.snapshot();
  ASSERT_EQ(events.size(), 2u);
  const FlightEvent& e = events[0];
  EXPECT_EQ(e.seq, 0u);
  EXPECT_EQ(e.thread.view(), "comm");
  EXPECT_EQ(e.group.view(), "mesh");
  EXPECT_EQ(e.op.view(), "all_reduce");
  EXPECT_EQ(e.group_seq, 41u);
  EXPECT_EQ(e.count, 1024);
  EXPECT_EQ(e.call_id, 7);
  EXPECT_EQ(e.chunk_index, 6);
  EXPECT_EQ(e.cache_epoch, 1);
  EXPECT_EQ(e.phase.view(), "generator");
  EXPECT_EQ(e.state, EventState::kStarted);
  EXPECT_EQ(events[1].kind, EventKind::kCommit);
  EXPECT_EQ(events[1].op.view(), "header_sent");
  EXPECT_EQ(events[1].detail.view(), "call 7");
  EXPECT_EQ(events[1].t_ns - e.t_ns, 3'000'000);
}

TEST(FlightRecorder, WrapsAroundKeepingTheNewestEventsOldestFirst) {
  FlightRecorder recorder(64);
  constexpr std::uint64_t kAppends = 200;
  for (std::uint64_t i = 0; i < kAppends; ++i) recorder.record(collective(i, 0));
  const auto events = recorder.snapshot();
  ASSERT_EQ(events.size(), 64u);
  for (std::size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].seq, kAppends - 64 + i);
    EXPECT_EQ(events[i].group_seq, events[i].seq);
  }
  EXPECT_EQ(recorder.appended_events(), kAppends);
  EXPECT_EQ(recorder.dropped_events(), 0u);
}

TEST(FlightRecorder, TruncatesLongStrings) {
  FlightRecorder recorder(64);
  EventSpec spec = collective(0, 0);
  const std::string long_group(100, 'g');
  const std::string long_detail(500, 'd');
  spec.group = long_group;
  spec.detail = long_detail;
  recorder.record(spec);
  const auto events = recorder.snapshot();
  EXPECT_EQ(events[0].group.view(), long_group.substr(0, kEventNameBytesMax));
  EXPECT_EQ(events[0].detail.view(), long_detail.substr(0, kEventDetailBytesMax));
}

TEST(FlightRecorder, RefusesMorePhaseNamesThanItsLimit) {
  FlightRecorder recorder(64);
  for (std::size_t i = 0; i < kFlightRecorderPhasesMax; ++i) recorder.set_phase("p" + std::to_string(i));
  recorder.set_phase("p0");  // known names never count twice
  try {
    recorder.set_phase("one-too-many");
    FAIL() << "expected Error{kLimit}";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kLimit);
    EXPECT_NE(std::string(e.what()).find("one-too-many"), std::string::npos);
  }
}

TEST(FlightRecorder, ObservesCollectivesIncludingRejectedOnes) {
  FlightRecorder recorder(64);
  CollectiveEvent event;
  event.group = "world";
  event.group_seq = 3;
  event.op = CollectiveOp::kSend;
  event.dtype = DType::kU8;
  event.count = 4096;
  event.root_or_peer = 1;
  event.phase = Phase::kGenerator;
  event.state = CollectiveState::kRejected;
  event.error_code = ErrorCode::kPhase;
  event.error_message = "group 'world' not allowed in phase generator";
  recorder.on_collective(event);
  event.op = CollectiveOp::kAllReduce;
  event.state = CollectiveState::kCompleted;
  recorder.on_collective(event);

  const auto events = recorder.snapshot();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, EventKind::kP2p);
  EXPECT_EQ(events[0].state, EventState::kFailed);
  EXPECT_EQ(events[0].op.view(), "send");
  EXPECT_EQ(events[0].peer, 1);
  EXPECT_EQ(events[0].phase.view(), "generator");
  EXPECT_EQ(events[0].detail.view().substr(0, 17), "rejected: phase: ");
  EXPECT_EQ(events[1].kind, EventKind::kCollective);
  EXPECT_EQ(events[1].state, EventState::kCompleted);
  EXPECT_TRUE(events[1].detail.view().empty());
}

DumpHeader sample_header() {
  DumpHeader header;
  header.rank = 2;
  header.world_size = 4;
  header.role = "worker";
  header.reason = DumpReason{DumpReasonKind::kTimeout, "timeout", "all_reduce on mesh", 20};
  header.armed.push_back(ArmedDeadline{"comm", "all_reduce", "mesh", 41, 5, 9});
  header.ledgers.push_back(LedgerSummary{"mesh", 42, "0123456789abcdef"});
  header.counters.emplace_back("stale_drops", 3);
  return header;
}

TEST(FlightRecorderDump, IsTheDocumentedVersionOneJson) {
  FlightRecorder recorder(64);
  recorder.set_context(7, 6, 1);
  recorder.record(collective(41, 1024));
  const auto dump = nlohmann::json::parse(format_dump(sample_header(), recorder.snapshot(), 123));
  EXPECT_EQ(dump["format"], "lockstep.flight_recorder");
  EXPECT_EQ(dump["version"], 1);
  EXPECT_EQ(dump["rank"], 2);
  EXPECT_EQ(dump["world_size"], 4);
  EXPECT_EQ(dump["pid"], getpid());
  EXPECT_EQ(dump["role"], "worker");
  EXPECT_EQ(dump["reason"]["kind"], "timeout");
  EXPECT_EQ(dump["reason"]["exit_code"], 20);
  EXPECT_EQ(dump["dumped_at_ns"], 123);
  EXPECT_EQ(dump["armed"][0]["what"], "all_reduce");
  EXPECT_EQ(dump["armed"][0]["group_seq"], 41);
  EXPECT_EQ(dump["ledgers"]["mesh"]["next_seq"], 42);
  EXPECT_EQ(dump["ledgers"]["mesh"]["digest"], "0123456789abcdef");
  EXPECT_EQ(dump["counters"]["stale_drops"], 3);
  ASSERT_EQ(dump["events"].size(), 1u);
  const auto& e = dump["events"][0];
  for (const char* key : {"t_ns", "thread", "kind", "group", "group_seq", "op", "dtype", "count",
                          "peer", "call_id", "chunk_index", "cache_epoch", "phase", "state",
                          "detail"}) {
    EXPECT_TRUE(e.contains(key)) << key;
  }
  EXPECT_EQ(e["kind"], "collective");
  EXPECT_EQ(e["dtype"], "f32");
  EXPECT_EQ(e["state"], "started");
  EXPECT_EQ(e["call_id"], 7);
}

TEST(FlightRecorderDump, StaysWithinItsSizeBoundWithHostileStrings) {
  FlightRecorder recorder(64);
  const std::string hostile(200, '\x01');  // each byte escapes to six
  EventSpec spec = collective(0, 0);
  spec.group = hostile;
  spec.op = hostile;
  spec.detail = hostile;
  for (int i = 0; i < 100; ++i) recorder.record(spec);
  DumpHeader header = sample_header();
  header.reason.message = std::string(1 << 20, '"');
  const std::string text = format_dump(header, recorder.snapshot(), 0);
  EXPECT_LE(text.size(), kDumpHeaderBytesMax + recorder.events_max() * kDumpEventBytesMax);
  EXPECT_EQ(nlohmann::json::parse(text)["events"].size(), 64u);
}

TEST(FlightRecorderDump, WritesTheRankFileUnderDumps) {
  char dir_template[] = "/tmp/lockstep-dump-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  FlightRecorder recorder(64);
  recorder.record(collective(1, 2));
  const auto path = write_dump(dir_template, sample_header(), recorder);
  EXPECT_EQ(path, std::filesystem::path(dir_template) / "dumps" / "rank-2.json");
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(nlohmann::json::parse(text.str())["events"][0]["count"], 2);
  std::filesystem::remove_all(dir_template);
}

TEST(FlightRecorderDump, NamesTheUnwritablePath) {
  FlightRecorder recorder(64);
  try {
    write_dump("/proc/lockstep-cannot-write-here", sample_header(), recorder);
    FAIL() << "expected Error{kResource}";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResource);
    EXPECT_NE(std::string(e.what()).find("/proc/lockstep-cannot-write-here"), std::string::npos);
  }
}

}  // namespace
}  // namespace lockstep
