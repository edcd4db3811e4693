// A chunk's tensors on a GPU (issue 16, Stage 0 on its own GPU): the device
// digest is digest_tensor's value bit for bit, whatever the size; Stage 0's
// inputs made on the GPU are the host's; the decoder runs real kernels for
// about the cost asked. Label gpu; skips without a CUDA device.
#include "model/cuda/chunk_tensors.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gpu/gpu_test_util.h"
#include "lockstep/digest.h"
#include "lockstep/reference_model.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kTimeout{60000};

std::vector<std::uint8_t> download(const std::uint8_t* device, std::size_t bytes) {
  std::vector<std::uint8_t> host(bytes);
  EXPECT_EQ(cudaMemcpy(host.data(), device, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  return host;
}

TEST(ChunkTensors, DeviceDigestIsTheHostsDigestAtEverySize) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  CudaChunkTensors tensors(0, kTimeout);
  // Short tails of every kind (XXH64's 32-, 8-, 4- and 1-byte steps), whole
  // blocks, and a chunk of the 14B shape (2160 x 5120 floats).
  for (const std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{31}, std::size_t{4096},
                                  std::size_t{4096 * 3 + 45}, std::size_t{2160} * 5120 * 4}) {
    SCOPED_TRACE(bytes);
    std::vector<std::uint8_t> host(bytes);
    for (std::size_t i = 0; i < bytes; ++i) host[i] = static_cast<std::uint8_t>(splitmix64(i) >> 7);
    std::uint8_t* device = bytes > 0 ? tensors.memory().allocate(bytes) : nullptr;
    if (bytes > 0) {
      ASSERT_EQ(cudaMemcpy(device, host.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
    }
    EXPECT_EQ(tensors.digest(device, bytes), digest_tensor(host.data(), bytes));
    if (bytes > 0) tensors.memory().release(device, bytes);
  }
}

TEST(ChunkTensors, InputsMadeOnTheGpuAreTheHostsBitForBit) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  CudaChunkTensors tensors(0, kTimeout);
  constexpr std::size_t kCount = 100'003;
  constexpr std::uint64_t kSeed = 7, kStream = 12;
  std::uint8_t* device = tensors.memory().allocate(kCount * sizeof(float));
  tensors.fill_inputs({reinterpret_cast<float*>(device), kCount}, kSeed, kStream);
  const std::vector<std::uint8_t> bytes = download(device, kCount * sizeof(float));
  tensors.memory().release(device, kCount * sizeof(float));
  for (std::size_t i = 0; i < kCount; i += 997) {
    const std::uint64_t bits = splitmix64(kSeed ^ (kStream << 32) ^ i);
    const auto expected = static_cast<float>(static_cast<double>(bits >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    float got = 0;
    std::memcpy(&got, bytes.data() + i * sizeof(float), sizeof got);
    ASSERT_EQ(got, expected) << "element " << i;
  }
}

// The decoder's depth is measured on this GPU: a costlier decode runs more
// layers, none runs for cost 0.
TEST(ChunkTensors, DecodeDepthFollowsTheCostAsked) {
  LOCKSTEP_REQUIRE_CUDA_DEVICE();
  CudaChunkTensors tensors(0, kTimeout);
  constexpr std::int64_t kRows = 96;
  constexpr int kDim = 256;
  const std::size_t bytes = kRows * kDim * sizeof(float);
  std::uint8_t* device = tensors.memory().allocate(bytes);
  const std::span<float> output{reinterpret_cast<float*>(device), static_cast<std::size_t>(kRows * kDim)};
  tensors.fill_inputs(output, 1, 1);
  EXPECT_EQ(tensors.decode(output, kRows, kDim, 0), 0);
  const int cheap = tensors.decode(output, kRows, kDim, 0.05);
  const int costly = tensors.decode(output, kRows, kDim, 5.0);
  EXPECT_GE(cheap, 1);
  EXPECT_GT(costly, cheap);
  tensors.memory().release(device, bytes);
}

}  // namespace
}  // namespace lockstep
