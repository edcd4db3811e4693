// The guarded, stream-ordered NCCL path end to end on one GPU (SPEC §4C): the
// Communicator's checks and ledger, the NcclBackend enqueueing on the compute
// stream, guard's CompletionTracker reporting completion from its own thread.
// Label gpu.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "gpu/memory_store.h"
#include "lockstep/communicator.h"
#include "lockstep/completion_tracker.h"
#include "lockstep/error.h"
#include "lockstep/nccl_backend.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
using testing::DeviceBytes;
using testing::MemoryStore;
using testing::StreamGate;

constexpr milliseconds kOpTimeout{10000};
constexpr std::size_t kMeshLane = 0;  // the mesh is the table's only group
constexpr std::size_t kCount = 1 << 16;

// Events arrive from the comm thread and the tracker's poller.
class EventLog final : public CollectiveObserver {
 public:
  void on_collective(const CollectiveEvent& event) noexcept override {
    const std::lock_guard lock(mutex_);
    states_.push_back({event.group_seq, event.state});
  }
  std::vector<std::pair<std::uint64_t, CollectiveState>> states() const {
    const std::lock_guard lock(mutex_);
    return states_;
  }
  std::size_t count(CollectiveState state) const {
    std::size_t n = 0;
    for (const auto& entry : states()) n += entry.second == state ? 1 : 0;
    return n;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<std::uint64_t, CollectiveState>> states_;
};

// One rank, one group on GPU 0, a compute stream, a tracker.
class GuardedStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
    factory_ = std::make_unique<NcclBackendFactory>(NcclBackendOptions{0, stream_, "guarded-stream-test"});
    GroupTable table(1);
    table.add("mesh", {0});
    comm_ = std::make_unique<Communicator>(
        CommunicatorOptions{0, table, make_standard_phase_policy(), Phase::kGenerator, milliseconds(20000)},
        *factory_, store_, &observer_);
    tracker_ = std::make_unique<CompletionTracker>(observer_, [this](const Error& error) {
      const std::lock_guard lock(failure_mutex_);
      failure_ = error.what();
    });
    comm_->set_completion_sink(tracker_.get());
  }
  void TearDown() override {
    tracker_.reset();
    comm_.reset();
    factory_.reset();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  std::string failure() {
    const std::lock_guard lock(failure_mutex_);
    return failure_;
  }

  MemoryStore store_;
  EventLog observer_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<NcclBackendFactory> factory_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<CompletionTracker> tracker_;
  std::mutex failure_mutex_;
  std::string failure_;
};

// The stream is held behind a host function, so the collective cannot have
// run when the call returns: the call only enqueued it, and the tracker
// reports it completed once the stream moves on.
TEST_F(GuardedStreamTest, AllReduceReturnsBeforeItsCollectiveCompletedOnTheGpu) {
  DeviceBytes data(kCount * sizeof(float));
  {
    StreamGate gate;
    gate.close_on(stream_);
    comm_->all_reduce_enqueue("mesh", data.get(), kCount, DType::kF32, ReduceOp::kSum, kOpTimeout);
    comm_->all_reduce_enqueue("mesh", data.get(), kCount, DType::kF32, ReduceOp::kSum, kOpTimeout);
    EXPECT_EQ(comm_->ledger_snapshot("mesh").next_seq, 2u) << "checked and ledgered before the enqueue";
    EXPECT_EQ(tracker_->in_flight(kMeshLane), 2u);
    EXPECT_EQ(observer_.count(CollectiveState::kCompleted), 0u) << "completed while the stream was held";
    EXPECT_EQ(cudaStreamQuery(stream_), cudaErrorNotReady);
    gate.open();
  }
  tracker_->wait_lane(kMeshLane, kOpTimeout);
  EXPECT_EQ(failure(), "");
  EXPECT_EQ(tracker_->completed_calls(), 2u);
  // The poller may report the first call started before the second is
  // enqueued; what must hold is each call's own order, and that the second
  // starts only once the first completed (deadlines from progress).
  const auto states = observer_.states();
  ASSERT_EQ(states.size(), 6u);
  const auto at = [&](std::uint64_t seq, CollectiveState state) {
    return std::find(states.begin(), states.end(), std::make_pair(seq, state)) - states.begin();
  };
  for (std::uint64_t seq : {0u, 1u}) {
    EXPECT_LT(at(seq, CollectiveState::kEnqueued), at(seq, CollectiveState::kStarted)) << seq;
    EXPECT_LT(at(seq, CollectiveState::kStarted), at(seq, CollectiveState::kCompleted)) << seq;
  }
  EXPECT_LT(at(0, CollectiveState::kCompleted), at(1, CollectiveState::kStarted));
}

// The sums captured into a CUDA graph enter the ledger with every replay, and
// each replay completes through one marker.
TEST_F(GuardedStreamTest, CapturedSumsAreLedgeredAndWatchedWithEveryReplay) {
  DeviceBytes data(kCount * sizeof(float));
  ASSERT_EQ(cudaMemsetAsync(data.get(), 0, kCount * sizeof(float), stream_), cudaSuccess);
  comm_->begin_capture();
  ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  comm_->all_reduce_enqueue("mesh", data.get(), kCount, DType::kF32, ReduceOp::kSum, kOpTimeout);
  comm_->all_reduce_enqueue("mesh", data.get(), kCount / 2, DType::kBF16, ReduceOp::kSum, kOpTimeout);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream_, &graph), cudaSuccess);
  const std::vector<Communicator::CapturedCall> captured = comm_->end_capture();
  ASSERT_EQ(captured.size(), 2u);
  EXPECT_EQ(comm_->ledger_snapshot("mesh").next_seq, 0u);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  cudaGraphDestroy(graph);
  constexpr int kReplays = 3;
  for (int i = 0; i < kReplays; ++i) {
    comm_->replay(captured, [&] { ASSERT_EQ(cudaGraphLaunch(exec, stream_), cudaSuccess); });
  }
  tracker_->wait_lane(kMeshLane, kOpTimeout);
  cudaGraphExecDestroy(exec);
  EXPECT_EQ(failure(), "");
  const LedgerSnapshot ledger = comm_->ledger_snapshot("mesh");
  EXPECT_EQ(ledger.next_seq, 2u * kReplays);
  EXPECT_EQ(ledger.recent[5], (LedgerEntry{5, CollectiveOp::kAllReduce, DType::kBF16, kCount / 2, kNoRootOrPeer}));
  EXPECT_EQ(tracker_->completed_calls(), 2u * kReplays);
}

}  // namespace
}  // namespace lockstep
