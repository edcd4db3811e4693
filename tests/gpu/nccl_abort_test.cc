// Bounded ends of NCCL work that can never complete: a communicator whose
// second rank never arrives, and an in-flight collective aborted from another
// thread (what guard does on its sacrificial thread). A binary of its own: an
// aborted communicator may leave the CUDA context unusable. Label gpu.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "gpu/gpu_test_util.h"
#include "gpu/memory_store.h"
#include "lockstep/error.h"
#include "lockstep/nccl_backend.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kSlack{3000};
constexpr std::size_t kCount = 1 << 20;

BackendGroupSpec spec_for(std::vector<int> members, int global_rank, milliseconds timeout) {
  BackendGroupSpec spec;
  spec.group_name = "mesh";
  spec.member_ranks = std::move(members);
  spec.global_rank = global_rank;
  spec.connect_timeout = timeout;
  return spec;
}

TEST(NcclAbort, InitWithAMissingRankTimesOutOnTimeNamingIt) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  testing::MemoryStore store;
  NcclBackendFactory factory(NcclBackendOptions{});
  constexpr milliseconds kTimeout{2000};
  const auto start = Clock::now();
  try {
    factory.connect(store, spec_for({0, 1}, 0, kTimeout));
    FAIL() << "a two-rank communicator cannot be built by one rank";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(error.what()).find("never arrived: 1"), std::string::npos)
        << error.what();
  }
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, kTimeout);
  EXPECT_LT(elapsed, kTimeout + kSlack);
}

TEST(NcclAbort, NonRootWithoutUniqueIdTimesOutOnTime) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  testing::MemoryStore store;
  NcclBackendFactory factory(NcclBackendOptions{});
  constexpr milliseconds kTimeout{500};
  const auto start = Clock::now();
  try {
    factory.connect(store, spec_for({0, 1}, 1, kTimeout));
    FAIL() << "rank 1 cannot connect without rank 0's unique id";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(error.what()).find("mesh/nccl_unique_id"), std::string::npos)
        << error.what();
  }
  EXPECT_LT(Clock::now() - start, kTimeout + kSlack);
}

struct OpOutcome {
  ErrorCode code = ErrorCode::kInternal;
  Clock::time_point ended;
};

TEST(NcclAbort, AbortFromAnotherThreadEndsAnInFlightCollectivePromptly) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  testing::MemoryStore store;
  NcclBackendFactory factory(NcclBackendOptions{});
  auto backend = factory.connect_nccl(store, spec_for({0}, 0, milliseconds(20000)));
  cudaStream_t compute = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), cudaSuccess);
  testing::DeviceBytes data(kCount * sizeof(float));
  testing::StreamGate gate;
  gate.close_on(compute);
  backend->set_compute_stream(compute);

  // The comm thread: a collective with a long timeout that cannot start.
  std::promise<OpOutcome> outcome;
  std::thread comm_thread([&] {
    OpOutcome result;
    try {
      backend->all_reduce(data.get(), kCount, DType::kF32, ReduceOp::kSum, milliseconds(60000));
    } catch (const Error& error) {
      result.code = error.code();
    }
    result.ended = Clock::now();
    outcome.set_value(result);
  });
  const auto in_flight_deadline = Clock::now() + kSlack;
  while (!backend->op_in_flight() && Clock::now() < in_flight_deadline) std::this_thread::yield();
  ASSERT_TRUE(backend->op_in_flight());

  // The sacrificial thread, as guard runs it.
  const auto abort_started = Clock::now();
  std::promise<void> abort_done;
  std::thread sacrificial([&] {
    backend->abort();
    abort_done.set_value();
  });
  std::future<OpOutcome> op = outcome.get_future();
  ASSERT_EQ(op.wait_for(kSlack), std::future_status::ready) << "the in-flight op ignored abort()";
  const OpOutcome result = op.get();
  EXPECT_EQ(result.code, ErrorCode::kAborted);
  EXPECT_LT(result.ended - abort_started, kSlack);
  comm_thread.join();

  gate.open();  // let ncclCommAbort finish whatever it waits for on the device
  if (abort_done.get_future().wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    sacrificial.detach();  // guard's hard-exit deadline covers this in production
    FAIL() << "ncclCommAbort did not return within 30 s";
  }
  sacrificial.join();
  EXPECT_TRUE(backend->broken());
}

}  // namespace
}  // namespace lockstep
