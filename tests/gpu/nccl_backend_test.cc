// The NCCL backend through the full Backend interface on a one-rank
// communicator (one GPU is enough): every collective and dtype, argument
// errors, and a timeout that leaves the backend broken. Label gpu.
#include "lockstep/nccl_backend.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "gpu/memory_store.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
using testing::DeviceBytes;
using testing::MemoryStore;

constexpr milliseconds kOpTimeout{10000};
constexpr std::size_t kCount = 4096;

std::unique_ptr<NcclBackend> connect_one_rank(Store& store, const std::string& group) {
  NcclBackendFactory factory(NcclBackendOptions{});
  BackendGroupSpec spec;
  spec.group_name = group;
  spec.member_ranks = {0};
  spec.global_rank = 0;
  spec.connect_timeout = milliseconds(20000);
  return factory.connect_nccl(store, spec);
}

std::vector<std::uint8_t> pattern(std::size_t size_bytes) {
  std::vector<std::uint8_t> bytes(size_bytes);
  // Small values keep every dtype's reinterpretation finite (no NaN max/min).
  for (std::size_t i = 0; i < size_bytes; ++i) bytes[i] = static_cast<std::uint8_t>(i % 7 + 1);
  return bytes;
}

std::vector<std::uint8_t> download(const void* device, std::size_t size_bytes) {
  std::vector<std::uint8_t> bytes(size_bytes);
  EXPECT_EQ(cudaMemcpy(bytes.data(), device, size_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  return bytes;
}

ErrorCode code_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& error) {
    return error.code();
  }
  ADD_FAILURE() << "expected a lockstep::Error";
  return ErrorCode::kInternal;
}

TEST(NcclBackend, OneRankCommunicatorRunsEveryCollectiveOnEveryDtype) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  MemoryStore store;
  auto backend = connect_one_rank(store, "mesh");
  EXPECT_EQ(backend->rank(), 0);
  EXPECT_EQ(backend->size(), 1);
  EXPECT_EQ(backend->name(), "nccl");
  EXPECT_EQ(backend->memory_kind(), MemoryKind::kDevice);
  for (std::uint8_t raw = 1; raw <= kDTypeMaxValue; ++raw) {
    const DType dtype = *dtype_from_wire(raw);
    const std::size_t size_bytes = kCount * dtype_size_bytes(dtype);
    const std::vector<std::uint8_t> input = pattern(size_bytes);
    DeviceBytes data(size_bytes);
    DeviceBytes gathered(size_bytes);
    ASSERT_EQ(cudaMemcpy(data.get(), input.data(), size_bytes, cudaMemcpyHostToDevice),
              cudaSuccess);
    // On one rank every reduction and the broadcast are identities: the bytes
    // must come back unchanged, which also checks the dtype mapping's widths.
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin}) {
      backend->all_reduce(data.get(), kCount, dtype, op, kOpTimeout);
      EXPECT_EQ(download(data.get(), size_bytes), input) << dtype_name(dtype);
    }
    backend->broadcast(data.get(), kCount, dtype, 0, kOpTimeout);
    backend->all_gather(data.get(), gathered.get(), kCount, dtype, kOpTimeout);
    EXPECT_EQ(download(gathered.get(), size_bytes), input) << dtype_name(dtype);
  }
  backend->barrier(kOpTimeout);
  EXPECT_FALSE(backend->broken());
}

TEST(NcclBackend, SumOfOneRankIsExactOnFloats) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  MemoryStore store;
  auto backend = connect_one_rank(store, "mesh");
  std::vector<float> values(kCount);
  std::iota(values.begin(), values.end(), -100.5f);
  DeviceBytes data(kCount * sizeof(float));
  ASSERT_EQ(cudaMemcpy(data.get(), values.data(), kCount * sizeof(float), cudaMemcpyHostToDevice),
            cudaSuccess);
  cudaStream_t compute = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), cudaSuccess);
  backend->set_compute_stream(compute);
  backend->all_reduce(data.get(), kCount, DType::kF32, ReduceOp::kSum, kOpTimeout);
  std::vector<float> out(kCount);
  ASSERT_EQ(cudaMemcpy(out.data(), data.get(), kCount * sizeof(float), cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(out, values);
  cudaStreamDestroy(compute);
}

// Host buffers (the mesh's payload broadcast and digest checks) are staged:
// a count of 2.5 staging buffers crosses piece boundaries, the last piece
// short. On one rank every op is an identity, so the bytes must come back.
TEST(NcclBackend, HostBuffersAreStagedPieceByPiece) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  MemoryStore store;
  auto backend = connect_one_rank(store, "mesh");
  const std::size_t count = kNcclStagingBytes / sizeof(float) * 5 / 2 + 3;
  std::vector<float> values(count);
  std::iota(values.begin(), values.end(), -1000.25f);
  std::vector<float> data = values;
  backend->all_reduce(data.data(), count, DType::kF32, ReduceOp::kSum, kOpTimeout);
  EXPECT_EQ(data, values);
  backend->broadcast(data.data(), count, DType::kF32, 0, kOpTimeout);
  EXPECT_EQ(data, values);
  std::vector<float> gathered(count, 0.0f);
  backend->all_gather(data.data(), gathered.data(), count, DType::kF32, kOpTimeout);
  EXPECT_EQ(gathered, values);
  std::vector<std::uint64_t> digest = {0x0123456789abcdefull};
  std::vector<std::uint64_t> digests(1);
  backend->all_gather(digest.data(), digests.data(), 1, DType::kI64, kOpTimeout);
  EXPECT_EQ(digests, digest);
  EXPECT_FALSE(backend->broken());
}

TEST(NcclBackend, ArgumentErrorsThrowInvalidArgumentThenBreakTheBackend) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  MemoryStore store;
  DeviceBytes device(64);
  std::vector<std::uint8_t> host(64);
  const std::vector<std::function<void(Backend&)>> bad_calls = {
      [&](Backend& b) { b.all_gather(host.data(), device.get(), 16, DType::kU8, kOpTimeout); },
      [&](Backend& b) { b.broadcast(device.get(), 16, DType::kF32, 1, kOpTimeout); },
      [&](Backend& b) { b.send(device.get(), 64, 0, 0, kOpTimeout); },  // self
      [&](Backend& b) { b.recv(device.get(), 64, 1, 0, kOpTimeout); },  // no such peer
  };
  for (std::size_t i = 0; i < bad_calls.size(); ++i) {
    auto backend = connect_one_rank(store, "bad-" + std::to_string(i));
    EXPECT_EQ(code_of([&] { bad_calls[i](*backend); }), ErrorCode::kInvalidArgument) << i;
    EXPECT_TRUE(backend->broken());
    EXPECT_EQ(code_of([&] { backend->barrier(kOpTimeout); }), ErrorCode::kAborted) << i;
  }
}

TEST(NcclBackend, UnknownGlobalRankIsRejectedBeforeAnyNcclCall) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  MemoryStore store;
  NcclBackendFactory factory(NcclBackendOptions{});
  BackendGroupSpec spec;
  spec.group_name = "mesh";
  spec.member_ranks = {1, 2};
  spec.global_rank = 0;
  EXPECT_EQ(code_of([&] { factory.connect(store, spec); }), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(store.check({"mesh/nccl_unique_id"}));
}

// A collective queued behind a held compute stream cannot finish: the wait must
// end at its timeout, not later, and leave the backend refusing further calls.
TEST(NcclBackend, TimeoutEndsTheWaitOnTimeAndBreaksTheBackend) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  MemoryStore store;
  auto backend = connect_one_rank(store, "mesh");
  cudaStream_t compute = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), cudaSuccess);
  DeviceBytes data(kCount * sizeof(float));
  constexpr milliseconds kTimeout{300};
  constexpr milliseconds kSlack{2000};
  {
    testing::StreamGate gate;
    gate.close_on(compute);
    backend->set_compute_stream(compute);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(code_of([&] {
                backend->all_reduce(data.get(), kCount, DType::kF32, ReduceOp::kSum, kTimeout);
              }),
              ErrorCode::kTimeout);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_GE(elapsed, kTimeout);
    EXPECT_LT(elapsed, kTimeout + kSlack);
    EXPECT_TRUE(backend->broken());
    EXPECT_FALSE(backend->op_in_flight());
    EXPECT_EQ(code_of([&] { backend->barrier(kOpTimeout); }), ErrorCode::kAborted);
  }  // the gate opens: the queued all-reduce completes on a live communicator
  backend->abort();
  backend->abort();  // a second abort is a no-op
  EXPECT_EQ(code_of([&] { backend->barrier(kOpTimeout); }), ErrorCode::kAborted);
  cudaStreamDestroy(compute);
}

// Two ranks, one GPU each, as two threads of this process (skipped below two
// devices): the data really moves — sums, a broadcast from rank 1, a gather,
// and send/recv in FIFO order.
void two_rank_body(Store& store, int rank, std::vector<float>& observed) {
  NcclBackendOptions options;
  options.device_index = rank;
  NcclBackendFactory factory(options);
  BackendGroupSpec spec;
  spec.group_name = "mesh";
  spec.member_ranks = {0, 1};
  spec.global_rank = rank;
  spec.connect_timeout = milliseconds(30000);
  auto backend = factory.connect_nccl(store, spec);
  constexpr std::size_t kN = 256;
  DeviceBytes data(kN * sizeof(float));
  DeviceBytes gathered(2 * kN * sizeof(float));
  std::vector<float> mine(kN, static_cast<float>(rank + 1));
  cudaMemcpy(data.get(), mine.data(), kN * sizeof(float), cudaMemcpyHostToDevice);
  backend->all_reduce(data.get(), kN, DType::kF32, ReduceOp::kSum, kOpTimeout);  // 3
  backend->all_gather(data.get(), gathered.get(), kN, DType::kF32, kOpTimeout);  // 3, 3
  std::vector<float> seven(kN, rank == 1 ? 7.0f : 0.0f);
  cudaMemcpy(data.get(), seven.data(), kN * sizeof(float), cudaMemcpyHostToDevice);
  backend->broadcast(data.get(), kN, DType::kF32, 1, kOpTimeout);  // 7 everywhere
  // Two messages 0 -> 1 must arrive in order (NCCL matches FIFO per peer).
  for (float value : {11.0f, 12.0f}) {
    if (rank == 0) {
      std::vector<float> message(kN, value);
      DeviceBytes out(kN * sizeof(float));
      cudaMemcpy(out.get(), message.data(), kN * sizeof(float), cudaMemcpyHostToDevice);
      backend->send(out.get(), kN * sizeof(float), 1, 0, kOpTimeout);
    } else {
      DeviceBytes in(kN * sizeof(float));
      backend->recv(in.get(), kN * sizeof(float), 0, 0, kOpTimeout);
      std::vector<float> message(kN);
      cudaMemcpy(message.data(), in.get(), kN * sizeof(float), cudaMemcpyDeviceToHost);
      observed.push_back(message.front());
    }
  }
  backend->barrier(kOpTimeout);
  std::vector<float> all(2 * kN);
  cudaMemcpy(all.data(), gathered.get(), all.size() * sizeof(float), cudaMemcpyDeviceToHost);
  std::vector<float> broadcast(kN);
  cudaMemcpy(broadcast.data(), data.get(), kN * sizeof(float), cudaMemcpyDeviceToHost);
  observed.push_back(all.front());
  observed.push_back(all.back());
  observed.push_back(broadcast.back());
}

TEST(NcclBackend, TwoRanksOnTwoGpusMoveRealData) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs two CUDA devices";
  MemoryStore store;
  std::vector<float> observed[2];
  std::string errors[2];
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    ranks.emplace_back([&, rank] {
      try {
        cudaSetDevice(rank);
        two_rank_body(store, rank, observed[rank]);
      } catch (const Error& error) {
        errors[rank] = error.what();
      }
    });
  }
  for (std::thread& rank : ranks) rank.join();
  ASSERT_EQ(errors[0] + errors[1], "");
  EXPECT_EQ(observed[0], (std::vector<float>{3.0f, 3.0f, 7.0f}));
  EXPECT_EQ(observed[1], (std::vector<float>{11.0f, 12.0f, 3.0f, 3.0f, 7.0f}));
}

}  // namespace
}  // namespace lockstep
