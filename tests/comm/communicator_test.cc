#include "lockstep/communicator.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "comm/recording_backend.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kTimeout{1000};

struct RecordedEvent {
  std::string group;
  std::uint64_t seq;
  CollectiveOp op;
  CollectiveState state;
  Phase phase;
  ErrorCode code;
  std::string message;
};

class EventLog final : public CollectiveObserver {
 public:
  void on_collective(const CollectiveEvent& event) noexcept override {
    events.push_back({std::string(event.group), event.group_seq, event.op, event.state, event.phase,
                      event.error_code, std::string(event.error_message)});
  }
  std::vector<RecordedEvent> events;
};

class CommunicatorTest : public ::testing::Test {
 protected:
  // A pp1 job of 4 ranks: world {0..3}, mesh {1,2,3}, boundary {0,1}.
  std::unique_ptr<Communicator> make(int global_rank, Phase phase = Phase::kControl) {
    CommunicatorOptions options;
    options.global_rank = global_rank;
    options.groups = make_standard_group_table(Topology::kPp1, 4);
    options.initial_phase = phase;
    return std::make_unique<Communicator>(std::move(options), factory, store, &observer);
  }

  // Runs fn, expects an Error of `code` whose message names all of `parts`,
  // and that no backend saw anything.
  void expect_rejected(auto&& fn, ErrorCode code, std::vector<std::string> parts) {
    const std::size_t calls_before = factory.log.size();
    try {
      fn();
      ADD_FAILURE() << "expected " << error_code_name(code);
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), code) << error.what();
      for (const std::string& part : parts) {
        EXPECT_NE(std::string(error.what()).find(part), std::string::npos)
            << "'" << part << "' missing from: " << error.what();
      }
    }
    EXPECT_EQ(factory.log.size(), calls_before) << "a rejected call reached the backend";
    ASSERT_FALSE(observer.events.empty());
    EXPECT_EQ(observer.events.back().state, CollectiveState::kRejected);
    EXPECT_EQ(observer.events.back().code, code);
  }

  test::RecordingFactory factory;
  test::UnusedStore store;
  EventLog observer;
  std::array<float, 8> data{};
};

TEST_F(CommunicatorTest, ConnectsOnlyMemberGroupsInTableOrder) {
  auto rank0 = make(0);
  EXPECT_EQ(factory.connected, (std::vector<std::string>{"world", "boundary"}));
  EXPECT_EQ(rank0->member_groups(), (std::vector<std::string_view>{"world", "boundary"}));
  factory.connected.clear();
  auto rank1 = make(1);
  EXPECT_EQ(factory.connected, (std::vector<std::string>{"world", "mesh", "boundary"}));
  EXPECT_EQ(rank1->group_rank("mesh"), 0);
  EXPECT_EQ(rank1->group_rank_of("mesh", 3), 2);
  EXPECT_EQ(rank0->group_rank("mesh"), std::nullopt);
}

TEST_F(CommunicatorTest, RankZeroMeshCollectiveIsRejectedBeforeBackend) {  // B1
  auto rank0 = make(0);
  expect_rejected([&] { rank0->all_reduce("mesh", data.data(), 8, DType::kF32, ReduceOp::kSum, kTimeout); },
                  ErrorCode::kMembership, {"rank 0", "'mesh'", "all_reduce", "phase control", "[1,2,3]"});
  EXPECT_EQ(observer.events.back().group, "mesh");
}

TEST_F(CommunicatorTest, WorldCollectiveInGeneratorPhaseIsRejected) {  // B2
  auto rank2 = make(2, Phase::kGenerator);
  expect_rejected([&] { rank2->barrier("world", kTimeout); }, ErrorCode::kPhase,
                  {"rank 2", "'world'", "barrier", "phase generator", "allowed: [mesh]"});
  rank2->barrier("mesh", kTimeout);
  ASSERT_EQ(factory.log.size(), 1u);
  EXPECT_EQ(factory.log[0].group, "mesh");
  rank2->set_phase(Phase::kControl);
  rank2->barrier("world", kTimeout);
  EXPECT_EQ(factory.log.size(), 2u);
}

TEST_F(CommunicatorTest, UnknownGroupIsRejected) {
  auto rank1 = make(1);
  expect_rejected([&] { rank1->barrier("tp", kTimeout); }, ErrorCode::kMembership, {"'tp'", "no such group"});
}

TEST_F(CommunicatorTest, RootAndPeerMustBeValidGroupRanks) {
  auto rank1 = make(1);
  expect_rejected([&] { rank1->broadcast("mesh", data.data(), 8, DType::kF32, 3, kTimeout); },
                  ErrorCode::kMembership, {"root 3", "group size 3"});
  expect_rejected([&] { rank1->broadcast("mesh", data.data(), 8, DType::kF32, -1, kTimeout); },
                  ErrorCode::kMembership, {"root -1"});
  expect_rejected([&] { rank1->send("boundary", data.data(), 8, DType::kF32, 1, 0, kTimeout); },
                  ErrorCode::kMembership, {"peer 1", "own group rank 1"});
  expect_rejected([&] { rank1->recv("boundary", data.data(), 8, DType::kF32, 2, 0, kTimeout); },
                  ErrorCode::kMembership, {"peer 2"});
}

TEST_F(CommunicatorTest, ArgumentsAreChecked) {
  auto rank1 = make(1);
  expect_rejected([&] { rank1->all_reduce("mesh", data.data(), 0, DType::kF32, ReduceOp::kSum, kTimeout); },
                  ErrorCode::kInvalidArgument, {"count 0"});
  expect_rejected([&] { rank1->all_reduce("mesh", nullptr, 8, DType::kF32, ReduceOp::kSum, kTimeout); },
                  ErrorCode::kInvalidArgument, {"non-null"});
  expect_rejected([&] { rank1->all_gather("mesh", data.data(), nullptr, 2, DType::kF32, kTimeout); },
                  ErrorCode::kInvalidArgument, {"non-null"});
  expect_rejected([&] { rank1->barrier("mesh", milliseconds(0)); }, ErrorCode::kInvalidArgument,
                  {"timeout 0 ms"});
  expect_rejected([&] { rank1->barrier("mesh", kCollectiveTimeoutMax + milliseconds(1)); },
                  ErrorCode::kInvalidArgument, {"timeout"});
  expect_rejected(
      [&] { rank1->all_reduce("mesh", data.data(), 8, static_cast<DType>(0), ReduceOp::kSum, kTimeout); },
      ErrorCode::kInvalidArgument, {"dtype"});
  // all_gather's output is group size × count: the product must stay bounded.
  const std::size_t count = kCollectiveBytesMax / 4 / 2;
  expect_rejected([&] { rank1->all_gather("mesh", data.data(), data.data(), count, DType::kF32, kTimeout); },
                  ErrorCode::kLimit, {"kCollectiveBytesMax"});
}

TEST_F(CommunicatorTest, PassingCallsAreLedgeredAndObserved) {
  auto rank1 = make(1);
  rank1->all_reduce("mesh", data.data(), 8, DType::kF32, ReduceOp::kSum, kTimeout);
  rank1->broadcast("mesh", data.data(), 4, DType::kF32, 2, kTimeout);
  rank1->send("boundary", data.data(), 2, DType::kF32, 0, 5, kTimeout);
  ASSERT_EQ(factory.log.size(), 3u);
  EXPECT_EQ(factory.log[1].op, "broadcast");
  EXPECT_EQ(factory.log[1].root_or_peer, 2);
  EXPECT_EQ(factory.log[2].size, 8u) << "p2p sizes reach the backend in bytes";

  const LedgerSnapshot mesh = rank1->ledger_snapshot("mesh");
  EXPECT_EQ(mesh.next_seq, 2u);
  EXPECT_EQ(mesh.recent[1], (LedgerEntry{1, CollectiveOp::kBroadcast, DType::kF32, 4, 2}));
  EXPECT_EQ(rank1->ledger_snapshot("boundary").next_seq, 1u);
  EXPECT_EQ(rank1->ledger_snapshot("world").next_seq, 0u);

  ASSERT_EQ(observer.events.size(), 9u);
  const std::array states{CollectiveState::kEnqueued, CollectiveState::kStarted, CollectiveState::kCompleted};
  for (std::size_t i = 0; i < observer.events.size(); ++i) EXPECT_EQ(observer.events[i].state, states[i % 3]);
  EXPECT_EQ(observer.events[4].seq, 1u);
  EXPECT_EQ(observer.events[4].op, CollectiveOp::kBroadcast);
  EXPECT_EQ(observer.events[4].phase, Phase::kControl);
}

TEST_F(CommunicatorTest, NonMemberHasNoLedger) {
  auto rank0 = make(0);
  try {
    rank0->ledger_snapshot("mesh");
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kMembership);
  }
}

TEST_F(CommunicatorTest, AfterABackendFailureNoBackendIsCalledAgain) {
  auto rank1 = make(1);
  factory.backends["mesh"]->fail_next = ErrorCode::kTimeout;
  try {
    rank1->all_reduce("mesh", data.data(), 8, DType::kF32, ReduceOp::kSum, kTimeout);
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kTimeout);
  }
  EXPECT_EQ(observer.events.back().state, CollectiveState::kFailed);
  EXPECT_EQ(observer.events.back().code, ErrorCode::kTimeout);
  EXPECT_TRUE(rank1->aborted());
  const std::size_t calls = factory.log.size();
  // Neither the failed group nor a healthy one may be used again.
  expect_rejected([&] { rank1->barrier("mesh", kTimeout); }, ErrorCode::kAborted, {"aborted"});
  expect_rejected([&] { rank1->barrier("world", kTimeout); }, ErrorCode::kAborted, {"aborted"});
  EXPECT_EQ(factory.log.size(), calls);
}

TEST_F(CommunicatorTest, AbortAbortsEveryBackendOnceAndBlocksLaterCalls) {
  auto rank1 = make(1);
  rank1->abort();
  rank1->abort();
  for (const auto& [name, backend] : factory.backends) EXPECT_EQ(backend->abort_calls, 1) << name;
  expect_rejected([&] { rank1->barrier("mesh", kTimeout); }, ErrorCode::kAborted, {"rank 1", "'mesh'"});
  EXPECT_TRUE(factory.log.empty());
}

TEST_F(CommunicatorTest, InvalidRankOrPhaseIsRefused) {
  EXPECT_THROW(make(4), Error);
  auto rank1 = make(1);
  EXPECT_THROW(rank1->set_phase(static_cast<Phase>(7)), Error);
  EXPECT_EQ(rank1->phase(), Phase::kControl);
}

// What a CompletionSink was handed: lane, event, and the probe itself.
class RecordingSink final : public CompletionSink {
 public:
  struct Tracked {
    std::size_t lane;
    std::string group;
    std::uint64_t seq;
    CollectiveState state;
    std::unique_ptr<CompletionProbe> probe;
  };
  void track(std::size_t lane, const CollectiveEvent& event, std::unique_ptr<CompletionProbe> probe,
             std::chrono::milliseconds) override {
    if (tracked.size() == refuse_after) throw Error(ErrorCode::kTimeout, "recording sink: lane stayed full");
    tracked.push_back({lane, std::string(event.group), event.group_seq, event.state, std::move(probe)});
  }
  std::vector<Tracked> tracked;
  std::size_t refuse_after = SIZE_MAX;  // the call that finds the lane full
};

CompletionProbe::State poll(CompletionProbe& probe) {
  std::string error;
  return probe.poll(error);
}

class StreamOrderedTest : public CommunicatorTest {
 protected:
  std::unique_ptr<Communicator> make_streamed(int global_rank) {
    auto comm = make(global_rank);
    for (const auto& [name, backend] : factory.backends) backend->streamed = true;
    comm->set_completion_sink(&sink);
    return comm;
  }
  RecordingSink sink;
};

// SPEC §4C: checks and ledger before the enqueue, then the call returns with
// its completion still pending, in the sink's hands; comm itself reports no
// started/completed (the tracker does, from progress).
TEST_F(StreamOrderedTest, EnqueuedSumIsCheckedLedgeredAndLeftPendingWithTheSink) {
  auto rank1 = make_streamed(1);
  rank1->all_reduce_enqueue("mesh", data.data(), 8, DType::kBF16, ReduceOp::kSum, kTimeout);
  rank1->all_reduce_enqueue("mesh", data.data(), 4, DType::kF32, ReduceOp::kSum, kTimeout);
  ASSERT_EQ(factory.log.size(), 2u);
  EXPECT_EQ(factory.log[0].op, "all_reduce(enqueued)");
  const LedgerSnapshot mesh = rank1->ledger_snapshot("mesh");
  EXPECT_EQ(mesh.next_seq, 2u);
  EXPECT_EQ(mesh.recent[0], (LedgerEntry{0, CollectiveOp::kAllReduce, DType::kBF16, 8, kNoRootOrPeer}));
  ASSERT_EQ(sink.tracked.size(), 2u);
  EXPECT_EQ(sink.tracked[1].lane, 1u) << "lane = the group's table index (world 0, mesh 1)";
  EXPECT_EQ(sink.tracked[1].group, "mesh");
  EXPECT_EQ(sink.tracked[1].seq, 1u);
  EXPECT_EQ(sink.tracked[1].state, CollectiveState::kEnqueued);
  EXPECT_EQ(poll(*sink.tracked[0].probe), CompletionProbe::State::kPending);
  ASSERT_EQ(observer.events.size(), 2u);
  for (const RecordedEvent& event : observer.events) EXPECT_EQ(event.state, CollectiveState::kEnqueued);
  factory.backends["mesh"]->completions[0]->state = CompletionProbe::State::kDone;
  EXPECT_EQ(poll(*sink.tracked[0].probe), CompletionProbe::State::kDone);
}

TEST_F(StreamOrderedTest, MisuseIsRefusedBeforeAnyBackendCall) {
  auto rank0 = make_streamed(0);
  expect_rejected([&] { rank0->all_reduce_enqueue("mesh", data.data(), 8, DType::kF32, ReduceOp::kSum, kTimeout); },
                  ErrorCode::kMembership, {"rank 0", "'mesh'"});  // B1
  rank0->begin_capture();
  expect_rejected([&] { rank0->all_reduce_enqueue("mesh", data.data(), 8, DType::kF32, ReduceOp::kSum, kTimeout); },
                  ErrorCode::kMembership, {"rank 0", "'mesh'"});  // B1 at capture too

  auto rank1 = make(1);  // no sink, backends without a stream
  try {
    rank1->all_reduce_enqueue("mesh", data.data(), 8, DType::kF32, ReduceOp::kSum, kTimeout);
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("has no stream"), std::string::npos) << error.what();
  }
  factory.backends["mesh"]->streamed = true;
  try {
    rank1->all_reduce_enqueue("mesh", data.data(), 8, DType::kF32, ReduceOp::kSum, kTimeout);
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("set_completion_sink"), std::string::npos) << error.what();
  }
  EXPECT_TRUE(factory.log.empty());
  EXPECT_FALSE(rank1->aborted());
}

// A failed enqueue breaks the rank as a failed blocking call does.
TEST_F(StreamOrderedTest, FailedEnqueueAbortsTheRank) {
  auto rank1 = make_streamed(1);
  factory.backends["mesh"]->fail_next = ErrorCode::kBackend;
  EXPECT_THROW(rank1->all_reduce_enqueue("mesh", data.data(), 8, DType::kF32, ReduceOp::kSum, kTimeout), Error);
  EXPECT_TRUE(rank1->aborted());
  EXPECT_EQ(observer.events.back().state, CollectiveState::kFailed);
  EXPECT_TRUE(sink.tracked.empty());
}

// Capture records without running; every replay admits the captured calls
// before the launch, so a replayed step's ledger equals an eager step's, and
// one marker completes them all.
TEST_F(StreamOrderedTest, EveryReplayLedgersTheCapturedCallsLikeAnEagerStep) {
  auto eager = make_streamed(1);
  eager->all_reduce_enqueue("mesh", data.data(), 8, DType::kBF16, ReduceOp::kSum, kTimeout);
  eager->all_reduce_enqueue("mesh", data.data(), 2, DType::kF32, ReduceOp::kSum, kTimeout);
  const std::uint64_t eager_digest = eager->ledger_snapshot("mesh").digest;

  test::RecordingFactory graph_factory;
  CommunicatorOptions options;
  options.global_rank = 1;
  options.groups = make_standard_group_table(Topology::kPp1, 4);
  options.initial_phase = Phase::kControl;
  EventLog graph_events;
  Communicator graph(std::move(options), graph_factory, store, &graph_events);
  RecordingSink graph_sink;
  graph.set_completion_sink(&graph_sink);
  test::RecordingBackend& mesh = *graph_factory.backends["mesh"];
  mesh.streamed = true;

  mesh.capturing = true;
  graph.begin_capture();
  graph.all_reduce_enqueue("mesh", data.data(), 8, DType::kBF16, ReduceOp::kSum, kTimeout);
  graph.all_reduce_enqueue("mesh", data.data(), 2, DType::kF32, ReduceOp::kSum, kTimeout);
  const std::vector<Communicator::CapturedCall> captured = graph.end_capture();
  mesh.capturing = false;
  ASSERT_EQ(captured.size(), 2u);
  EXPECT_EQ(graph.ledger_snapshot("mesh").next_seq, 0u) << "nothing ran at capture";
  EXPECT_TRUE(graph_events.events.empty());
  EXPECT_TRUE(graph_sink.tracked.empty());

  int launches = 0;
  graph.replay(captured, [&] {
    EXPECT_EQ(graph.ledger_snapshot("mesh").next_seq, 2u) << "admitted before the launch";
    ++launches;
  });
  EXPECT_EQ(launches, 1);
  EXPECT_EQ(graph.ledger_snapshot("mesh").digest, eager_digest);
  ASSERT_EQ(graph_sink.tracked.size(), 2u);
  ASSERT_EQ(mesh.completions.size(), 1u) << "one marker per replay";
  EXPECT_EQ(poll(*graph_sink.tracked[1].probe), CompletionProbe::State::kPending);
  mesh.completions[0]->state = CompletionProbe::State::kDone;
  EXPECT_EQ(poll(*graph_sink.tracked[0].probe), CompletionProbe::State::kDone);
  EXPECT_EQ(poll(*graph_sink.tracked[1].probe), CompletionProbe::State::kDone);

  graph.replay(captured, [&] { ++launches; });
  EXPECT_EQ(graph.ledger_snapshot("mesh").next_seq, 4u);
  EXPECT_EQ(graph_sink.tracked.back().seq, 3u);

  graph.abort();
  EXPECT_THROW(graph.replay(captured, [&] { ++launches; }), Error);
  EXPECT_EQ(launches, 2) << "a refused replay never launches";
}

// A replay whose calls cannot all be watched aborts the rank and reports
// every call nothing will watch as failed: none stays "enqueued" forever.
TEST_F(StreamOrderedTest, ReplayThatCannotWatchItsCallsReportsThemFailed) {
  auto rank1 = make_streamed(1);
  test::RecordingBackend& mesh = *factory.backends["mesh"];
  mesh.capturing = true;
  rank1->begin_capture();
  for (int i = 0; i < 3; ++i) rank1->all_reduce_enqueue("mesh", data.data(), 8, DType::kF32, ReduceOp::kSum, kTimeout);
  const std::vector<Communicator::CapturedCall> captured = rank1->end_capture();
  mesh.capturing = false;
  sink.refuse_after = 1;
  EXPECT_THROW(rank1->replay(captured, [] {}), Error);
  EXPECT_TRUE(rank1->aborted());
  ASSERT_EQ(sink.tracked.size(), 1u);
  std::vector<std::uint64_t> failed;
  for (const RecordedEvent& event : observer.events) {
    if (event.state == CollectiveState::kFailed) {
      failed.push_back(event.seq);
      EXPECT_EQ(event.code, ErrorCode::kTimeout) << "the real cause is reported";
    }
  }
  EXPECT_EQ(failed, (std::vector<std::uint64_t>{1, 2}));
}

TEST_F(StreamOrderedTest, CaptureStateIsChecked) {
  auto rank1 = make_streamed(1);
  EXPECT_THROW(rank1->end_capture(), Error);
  rank1->begin_capture();
  EXPECT_THROW(rank1->begin_capture(), Error);
  EXPECT_THROW(rank1->replay({}, [] {}), Error);
  // The backend's stream is not capturing: the call ran, unledgered.
  try {
    rank1->all_reduce_enqueue("mesh", data.data(), 8, DType::kF32, ReduceOp::kSum, kTimeout);
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("ran eagerly"), std::string::npos) << error.what();
  }
  EXPECT_TRUE(rank1->aborted());
}

}  // namespace
}  // namespace lockstep
