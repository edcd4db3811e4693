#include "model/cuda/chunk_tensors.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backends/nccl/cuda_check.h"
#include "lockstep/digest.h"
#include "lockstep/error.h"
#include "model/cuda/device_buffer.h"
#include "model/cuda/event_wait.h"
#include "model/cuda/kernels.h"

namespace lockstep {
namespace {

using cuda_detail::check_cuda;
using cuda_model::DeviceArray;

constexpr int kDecoderChannels = 16;
constexpr int kDecodedChannels = 3;
// The decoder alternates between two buffers, so its memory does not grow
// with depth; the bound only stops a runaway calibration (a cost of minutes
// on a tiny shape).
constexpr int kDecoderLayersMax = 1 << 16;
constexpr std::uint64_t kDecoderWeightSeed = 0x7661655f64656364ull;  // "vae_decd"

// Waits for everything this thread queued on its own stream.
void wait_for_this_thread(int device_index, std::chrono::milliseconds timeout, const char* what) {
  check_cuda(cudaSetDevice(device_index), "cudaSetDevice");
  const cuda_model::CudaEvent event;
  check_cuda(cudaEventRecord(event.get(), cudaStreamPerThread), what);
  cuda_model::wait_event(event.get(), timeout, "gpu", what);
}

class PooledDeviceMemory final : public PayloadMemory {
 public:
  PooledDeviceMemory(int device_index, std::chrono::milliseconds timeout)
      : device_index_(device_index), timeout_(timeout) {}
  ~PooledDeviceMemory() override {
    cudaSetDevice(device_index_);
    for (auto& [bytes, block] : free_) cudaFree(block);
  }
  PooledDeviceMemory(const PooledDeviceMemory&) = delete;
  PooledDeviceMemory& operator=(const PooledDeviceMemory&) = delete;

  std::uint8_t* allocate(std::size_t bytes) override {
    {
      const std::lock_guard lock(mu_);
      if (const auto found = free_.find(bytes); found != free_.end()) {
        std::uint8_t* block = found->second;
        free_.erase(found);
        return block;
      }
    }
    check_cuda(cudaSetDevice(device_index_), "cudaSetDevice");
    void* block = nullptr;
    if (cudaMalloc(&block, bytes) != cudaSuccess) {
      cudaGetLastError();
      throw Error(ErrorCode::kResource, "cannot allocate " + std::to_string(bytes) + " bytes of device payload on GPU " +
                                            std::to_string(device_index_));
    }
    return static_cast<std::uint8_t*>(block);
  }

  void release(std::uint8_t* block, std::size_t bytes) noexcept override {
    if (block == nullptr) return;
    {
      const std::lock_guard lock(mu_);
      if (free_.size() < CudaChunkTensors::kPooledBlocksMax) {
        free_.emplace(bytes, block);
        return;
      }
    }
    cudaSetDevice(device_index_);
    cudaFree(block);
  }

  void copy(void* to, const void* from, std::size_t bytes) override {
    check_cuda(cudaSetDevice(device_index_), "cudaSetDevice");
    check_cuda(cudaMemcpyAsync(to, from, bytes, cudaMemcpyDefault, cudaStreamPerThread), "copy payload");
    wait_for_this_thread(device_index_, timeout_, "copy payload");
  }

 private:
  const int device_index_;
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::multimap<std::size_t, std::uint8_t*> free_;
};

}  // namespace

struct CudaChunkTensors::Impl {
  // One decoder shape (Stage 0 decodes the same shape every chunk).
  struct Decoder {
    std::int64_t rows = 0;
    int dim = 0;
    double cost_ms = 0;
    int layers = 0;
    DeviceArray<float> weights, bias, rgb_weights, rgb_bias, a, b, up, rgb;
  };

  Impl(int device, std::chrono::milliseconds wait) : device_index(device), timeout(wait), memory(device, wait) {}

  void run_decoder(const float* input, int layers) {
    Decoder& d = *decoder;
    const int h = static_cast<int>(d.rows), w = d.dim / kDecoderChannels;
    const float* in = input;
    for (int layer = 0; layer < layers; ++layer) {
      float* out = layer % 2 == 0 ? d.a.get() : d.b.get();
      cuda_model::conv3x3(in, out, d.weights.get(), d.bias.get(), kDecoderChannels, kDecoderChannels, h, w, true,
                          cudaStreamPerThread);
      in = out;
    }
    cuda_model::upsample2x(in, d.up.get(), kDecoderChannels, h, w, cudaStreamPerThread);
    cuda_model::conv3x3(d.up.get(), d.rgb.get(), d.rgb_weights.get(), d.rgb_bias.get(), kDecoderChannels,
                        kDecodedChannels, 2 * h, 2 * w, false, cudaStreamPerThread);
  }

  double time_decoder_ms(const float* input, int layers) {
    const cuda_model::CudaEvent begin(/*timing=*/true), end(/*timing=*/true);
    check_cuda(cudaEventRecord(begin.get(), cudaStreamPerThread), "record event");
    run_decoder(input, layers);
    check_cuda(cudaEventRecord(end.get(), cudaStreamPerThread), "record event");
    wait_for_this_thread(device_index, timeout, "decoder calibration");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, begin.get(), end.get()), "decoder time");
    return ms;
  }

  // Builds the decoder for a shape and picks its depth from two timed runs
  // (1 and 3 middle layers): cost ≈ fixed + layers · per_layer.
  void build_decoder(const float* input, std::int64_t rows, int dim, double cost_ms) {
    if (dim % kDecoderChannels != 0) {
      throw Error(ErrorCode::kInvalidArgument, "gpu decode: dim " + std::to_string(dim) +
                                                   " is not a multiple of " + std::to_string(kDecoderChannels));
    }
    decoder.emplace();
    Decoder& d = *decoder;
    d.rows = rows;
    d.dim = dim;
    d.cost_ms = cost_ms;
    const std::size_t plane = static_cast<std::size_t>(rows) * dim;  // 16 channels × rows × dim/16
    const std::size_t conv = kDecoderChannels * kDecoderChannels * 9, rgb = kDecodedChannels * kDecoderChannels * 9;
    d.weights = DeviceArray<float>(conv);
    d.bias = DeviceArray<float>(kDecoderChannels);
    d.rgb_weights = DeviceArray<float>(rgb);
    d.rgb_bias = DeviceArray<float>(kDecodedChannels);
    d.a = DeviceArray<float>(plane);
    d.b = DeviceArray<float>(plane);
    d.up = DeviceArray<float>(4 * plane);
    d.rgb = DeviceArray<float>(4 * plane / kDecoderChannels * kDecodedChannels);
    const auto fan_in = static_cast<float>(1.0 / std::sqrt(kDecoderChannels * 9.0));
    cuda_model::fill_uniform(d.weights.get(), conv, kDecoderWeightSeed, 0, fan_in, cudaStreamPerThread);
    cuda_model::fill_uniform(d.bias.get(), kDecoderChannels, kDecoderWeightSeed, 1, 0.1f, cudaStreamPerThread);
    cuda_model::fill_uniform(d.rgb_weights.get(), rgb, kDecoderWeightSeed, 2, fan_in, cudaStreamPerThread);
    cuda_model::fill_uniform(d.rgb_bias.get(), kDecodedChannels, kDecoderWeightSeed, 3, 0.1f, cudaStreamPerThread);
    time_decoder_ms(input, 1);  // warm-up
    const double one = time_decoder_ms(input, 1), three = time_decoder_ms(input, 3);
    const double per_layer = std::max((three - one) / 2.0, 1e-3);
    const double fixed = std::max(one - per_layer, 0.0);
    d.layers = std::clamp(static_cast<int>(std::lround((cost_ms - fixed) / per_layer)), 1, kDecoderLayersMax);
  }

  const int device_index;
  const std::chrono::milliseconds timeout;
  PooledDeviceMemory memory;
  std::mutex digest_mu;
  std::optional<DeviceArray<std::uint64_t>> block_digests;  // grown to the largest tensor digested
  std::vector<std::uint64_t> host_block_digests;
  std::optional<Decoder> decoder;
};

CudaChunkTensors::CudaChunkTensors(int device_index, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>(device_index, timeout)) {}

CudaChunkTensors::~CudaChunkTensors() = default;

PayloadMemory& CudaChunkTensors::memory() { return impl_->memory; }

void CudaChunkTensors::fill_inputs(std::span<float> device_values, std::uint64_t seed, std::uint64_t stream_id) {
  check_cuda(cudaSetDevice(impl_->device_index), "cudaSetDevice");
  cuda_model::fill_uniform(device_values.data(), device_values.size(), seed, stream_id, 1.0f, cudaStreamPerThread);
  wait_for_this_thread(impl_->device_index, impl_->timeout, "inputs");
}

void CudaChunkTensors::add(std::span<float> device_values, std::size_t index, float delta) {
  if (index >= device_values.size()) {
    throw Error(ErrorCode::kInvalidArgument, "gpu add: index " + std::to_string(index) + " past " +
                                                 std::to_string(device_values.size()) + " values");
  }
  check_cuda(cudaSetDevice(impl_->device_index), "cudaSetDevice");
  float value = 0;
  check_cuda(cudaMemcpyAsync(&value, device_values.data() + index, sizeof value, cudaMemcpyDefault,
                             cudaStreamPerThread), "read value");
  wait_for_this_thread(impl_->device_index, impl_->timeout, "read value");
  value += delta;
  check_cuda(cudaMemcpyAsync(device_values.data() + index, &value, sizeof value, cudaMemcpyDefault,
                             cudaStreamPerThread), "write value");
  wait_for_this_thread(impl_->device_index, impl_->timeout, "write value");
}

std::uint64_t CudaChunkTensors::digest(const void* device_data, std::size_t bytes) {
  const std::size_t blocks = (bytes + kTensorDigestBlockBytes - 1) / kTensorDigestBlockBytes;
  if (blocks == 0) return digest_tensor_blocks({}, 0);
  const std::lock_guard lock(impl_->digest_mu);
  check_cuda(cudaSetDevice(impl_->device_index), "cudaSetDevice");
  if (!impl_->block_digests || impl_->block_digests->count() < blocks) {
    impl_->block_digests.emplace(blocks);
    impl_->host_block_digests.resize(blocks);
  }
  cuda_model::tensor_block_digests(device_data, bytes, kTensorDigestBlockBytes, impl_->block_digests->get(),
                                   cudaStreamPerThread);
  check_cuda(cudaMemcpyAsync(impl_->host_block_digests.data(), impl_->block_digests->get(),
                             blocks * sizeof(std::uint64_t), cudaMemcpyDeviceToHost, cudaStreamPerThread),
             "download block digests");
  wait_for_this_thread(impl_->device_index, impl_->timeout, "digest");
  return digest_tensor_blocks(std::span(impl_->host_block_digests).first(blocks), bytes);
}

int CudaChunkTensors::decode(std::span<const float> device_output, std::int64_t rows, int dim, double cost_ms) {
  if (cost_ms <= 0) return 0;
  if (device_output.size() != static_cast<std::size_t>(rows) * static_cast<std::size_t>(dim)) {
    throw Error(ErrorCode::kInvalidArgument, "gpu decode: " + std::to_string(device_output.size()) +
                                                 " values are not " + std::to_string(rows) + " x " +
                                                 std::to_string(dim));
  }
  check_cuda(cudaSetDevice(impl_->device_index), "cudaSetDevice");
  const auto& d = impl_->decoder;
  if (!d || d->rows != rows || d->dim != dim || d->cost_ms != cost_ms) {
    impl_->build_decoder(device_output.data(), rows, dim, cost_ms);
  }
  impl_->run_decoder(device_output.data(), impl_->decoder->layers);
  // The decode is meant to take cost_ms: the deadline is for what comes on top.
  const auto bound = impl_->timeout + std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(cost_ms)));
  wait_for_this_thread(impl_->device_index, bound, "decode");
  return impl_->decoder->layers;
}

}  // namespace lockstep
