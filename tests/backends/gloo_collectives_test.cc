// Every Backend operation of the Gloo backend, checked for its result on 2, 3,
// 4 and 8 real processes rendezvousing through the file store.
#include <gloo/types.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "backends/gloo/reduce.h"
#include "backends/rank_job.h"
#include "support/multiprocess.h"

namespace lockstep::test {
namespace {

// Generous: these ranks must never time out, even on a loaded CI machine.
constexpr std::chrono::milliseconds kOpTimeout{15000};
constexpr std::size_t kCount = 33;  // odd, so ring segments are uneven

void check_broadcast(Backend& world) {
  for (int root = 0; root < world.size(); ++root) {
    std::vector<double> data(kCount, -1.0);
    if (world.rank() == root) {
      for (std::size_t i = 0; i < kCount; ++i) data[i] = root * 1000.0 + static_cast<double>(i);
    }
    world.broadcast(data.data(), kCount, DType::kF64, root, kOpTimeout);
    for (std::size_t i = 0; i < kCount; ++i) {
      require(data[i] == root * 1000.0 + static_cast<double>(i), "broadcast from root " + std::to_string(root));
    }
  }
}

// Rank r contributes r + 1 + i at element i, so sum, max and min are known.
template <typename T>
void check_all_reduce_typed(Backend& world, DType dtype) {
  const int n = world.size();
  const std::int64_t rank_sum = static_cast<std::int64_t>(n) * (n + 1) / 2;
  for (const ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin}) {
    std::vector<T> data(kCount);
    for (std::size_t i = 0; i < kCount; ++i) data[i] = static_cast<T>(world.rank() + 1 + static_cast<int>(i));
    world.all_reduce(data.data(), kCount, dtype, op, kOpTimeout);
    for (std::size_t i = 0; i < kCount; ++i) {
      const auto k = static_cast<std::int64_t>(i);
      const std::int64_t want = op == ReduceOp::kSum ? rank_sum + n * k : op == ReduceOp::kMax ? n + k : 1 + k;
      // u8 sums wrap modulo 256 on every rank alike.
      require(data[i] == static_cast<T>(want),
              std::string("all_reduce ") + std::string(dtype_name(dtype)) + " op " +
                  std::to_string(static_cast<int>(op)) + " element " + std::to_string(i));
    }
  }
}

// f16 / bf16: small integers are exact in both, so results compare exactly.
template <typename T, typename ToFloat, typename FromFloat>
void check_all_reduce_half(Backend& world, DType dtype, ToFloat to_float, FromFloat from_float) {
  const int n = world.size();
  std::vector<T> data(kCount);
  for (std::size_t i = 0; i < kCount; ++i) data[i] = from_float(static_cast<float>(world.rank() + 1 + static_cast<int>(i % 4)));
  world.all_reduce(data.data(), kCount, dtype, ReduceOp::kSum, kOpTimeout);
  for (std::size_t i = 0; i < kCount; ++i) {
    const float want = static_cast<float>(n * (n + 1) / 2 + n * static_cast<int>(i % 4));
    require(to_float(data[i]) == want, std::string("all_reduce sum ") + std::string(dtype_name(dtype)));
  }
}

void check_all_reduce(Backend& world) {
  check_all_reduce_typed<float>(world, DType::kF32);
  check_all_reduce_typed<double>(world, DType::kF64);
  check_all_reduce_typed<std::int32_t>(world, DType::kI32);
  check_all_reduce_typed<std::int64_t>(world, DType::kI64);
  check_all_reduce_typed<std::uint8_t>(world, DType::kU8);
  check_all_reduce_half<gloo::float16>(
      world, DType::kF16, [](gloo::float16 h) { return gloo::cpu_half2float(h); },
      [](float f) { return gloo::cpu_float2half_rn(f); });
  check_all_reduce_half<std::uint16_t>(world, DType::kBF16, gloo_detail::bf16_to_float,
                                       gloo_detail::float_to_bf16);
}

void check_all_gather(Backend& world) {
  std::vector<std::int32_t> in(kCount);
  for (std::size_t i = 0; i < kCount; ++i) in[i] = world.rank() * 1000 + static_cast<std::int32_t>(i);
  std::vector<std::int32_t> out(kCount * static_cast<std::size_t>(world.size()), -1);
  world.all_gather(in.data(), out.data(), kCount, DType::kI32, kOpTimeout);
  for (int r = 0; r < world.size(); ++r) {
    for (std::size_t i = 0; i < kCount; ++i) {
      require(out[static_cast<std::size_t>(r) * kCount + i] == r * 1000 + static_cast<std::int32_t>(i),
              "all_gather slot of rank " + std::to_string(r));
    }
  }
}

// Rank 0 exchanges two tagged messages with every other rank, in both
// directions, with payloads that name sender, receiver and tag.
void check_send_recv(Backend& world) {
  constexpr std::uint32_t kTagA = 7;
  constexpr std::uint32_t kTagB = 0x12345;
  const auto payload = [](int from, int to, std::uint32_t tag) {
    return std::vector<std::uint8_t>{static_cast<std::uint8_t>(from), static_cast<std::uint8_t>(to),
                                     static_cast<std::uint8_t>(tag & 0xFF), 0xAB};
  };
  const auto exchange = [&](int from, int to) {
    for (const std::uint32_t tag : {kTagA, kTagB}) {
      if (world.rank() == from) {
        const auto data = payload(from, to, tag);
        world.send(data.data(), data.size(), to, tag, kOpTimeout);
      } else if (world.rank() == to) {
        std::vector<std::uint8_t> data(4, 0);
        world.recv(data.data(), data.size(), from, tag, kOpTimeout);
        require(data == payload(from, to, tag), "recv payload from " + std::to_string(from));
      }
    }
  };
  for (int peer = 1; peer < world.size(); ++peer) {
    exchange(0, peer);
    exchange(peer, 0);
  }
}

int run_every_op(int) {
  RankJob job = join_world();
  Backend& world = *job.world;
  require(world.rank() == job.env.rank && world.size() == job.env.world_size, "group rank/size");
  require(world.name() == "gloo" && world.memory_kind() == MemoryKind::kHost, "name/memory kind");
  check_broadcast(world);
  check_all_reduce(world);
  check_all_gather(world);
  world.barrier(kOpTimeout);
  check_send_recv(world);
  world.barrier(kOpTimeout);
  return 0;
}

class GlooCollectives : public ::testing::TestWithParam<int> {};

TEST_P(GlooCollectives, EveryOpGivesTheExpectedResult) {
  RanksOptions options;
  options.world_size = GetParam();
  options.wall_timeout = std::chrono::milliseconds(90000);
  const RanksResult result = run_ranks(options, run_every_op);
  EXPECT_FALSE(result.hung) << result.describe();
  EXPECT_TRUE(result.all_ok()) << result.describe();
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, GlooCollectives, ::testing::Values(2, 3, 4, 8),
                         [](const auto& info) { return "world" + std::to_string(info.param); });

}  // namespace
}  // namespace lockstep::test
