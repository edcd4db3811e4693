// gpu_rank.h with CUDA: the NCCL factory and the CUDA model on one stream.
#include <chrono>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "gpu_rank.h"
#include "lockstep/assert.h"
#include "lockstep/cuda_model.h"
#include "lockstep/digest.h"
#include "lockstep/model_config.h"
#include "lockstep/nccl_backend.h"
#include "lockstep/run_config.h"
#include "model/cuda/chunk_tensors.h"
#include "tensor_place.h"

namespace lockstep {
namespace {

// The model's all-reduces on device buffers, through the guarded
// communicator: the gate's checks and the ledger hold for every one, the sum
// is enqueued on the model's stream, and the completion tracker watches it
// (SPEC §4C) — the host never waits per op, so a CUDA graph can hold them.
class GuardedDeviceSums final : public CudaTensorParallelOps {
 public:
  GuardedDeviceSums(const RankContext& context, void* stream) : context_(&context), stream_(stream) {}
  int rank() const override { return context_->mesh_rank(); }
  int size() const override { return context_->config.mesh_size(); }
  void all_reduce_sum(void* device_data, std::size_t count, DType dtype, void* cuda_stream) override {
    LOCKSTEP_ASSERT(cuda_stream == stream_);  // the stream the backend orders against
    context_->comm.all_reduce_enqueue(kGroupMesh, device_data, count, dtype, ReduceOp::kSum, context_->deadline());
  }
  bool stream_ordered() const override { return true; }
  void begin_capture() override { context_->comm.begin_capture(); }
  std::size_t end_capture() override {
    captures_.push_back(context_->comm.end_capture());
    return captures_.size() - 1;
  }
  void replay(std::size_t capture, const std::function<void()>& launch) override {
    context_->comm.replay(captures_.at(capture), launch);
  }
  // Eager mode only: a captured graph holds the old generation's calls.
  void rebind(const RankContext& context) {
    LOCKSTEP_ASSERT(captures_.empty());
    context_ = &context;
  }

 private:
  const RankContext* context_;  // the current generation's
  void* const stream_;
  std::vector<std::vector<Communicator::CapturedCall>> captures_;  // one per graph the model holds
};

std::uint64_t fingerprint_loaded(CudaModel& model, std::chrono::milliseconds timeout) {
  DigestStream digest;
  model.visit_weights([&digest](std::span<const std::uint8_t> piece) { digest.update(piece); }, timeout);
  return digest.digest();
}

// The device holds the tensors; the KvRing holds the bookkeeping that every
// check reads. Each event is checked on the ring before the device changes,
// and applied to the ring once the device call went through.
class CudaGenerator final : public MeshGenerator {
 public:
  CudaGenerator(const RankContext& context, int device_index, void* stream)
      : context_(&context),
        captures_graphs_(context.config.graph_capture),
        config_(model_config_from_name(context.config.model)),
        sums_(std::make_unique<GuardedDeviceSums>(context, stream)),
        model_(config_, context.config.seed, *sums_,
               CudaModelOptions{device_index, context.config.graph_capture, stream}),
        ring_(config_.window_frames),
        weight_fingerprint_(fingerprint_loaded(model_, std::chrono::milliseconds(context.config.startup_deadline_ms))) {}

  std::uint64_t weight_fingerprint() const override { return weight_fingerprint_; }
  // A model that captures CUDA graphs holds its generation's NCCL calls.
  bool outlives_generation() const override { return !captures_graphs_; }
  // Keeps the weights on the device for the next generation, read back and
  // fingerprinted again for its handshake.
  void rebind(const RankContext& context) override {
    LOCKSTEP_ASSERT(outlives_generation());
    context_ = &context;
    sums_->rebind(context);
    weight_fingerprint_ = fingerprint_loaded(model_, std::chrono::milliseconds(context.config.startup_deadline_ms));
  }
  WeightStorage weight_storage() const override { return WeightStorage::kBf16Matrices; }

  const KvRing& kv() const override { return ring_; }
  void kv_init(std::uint64_t cache_epoch, std::int64_t start_frame, float attention_bias) override {
    ring_.init(cache_epoch, start_frame, attention_bias);
    model_.reset_cache();
    model_.set_attention_bias(attention_bias);
  }
  void kv_hard_cut() override {
    ring_.hard_cut();
    model_.reset_cache();
  }
  void kv_set_attention_bias(float attention_bias) override {
    ring_.set_attention_bias(attention_bias);
    model_.set_attention_bias(attention_bias);
  }

  void load(std::span<const float> x) override { model_.set_latents(x); }
  void recompute(std::span<const float> context) override {
    ring_.require(KvEvent::kRecompute);
    model_.recompute(context);  // checks the context's size before any collective
    const auto frames = static_cast<int>(context.size() / (static_cast<std::size_t>(config_.tokens_per_frame) * config_.dim));
    ring_.replace_all(frames);
    ++generator_calls_;
    check_in_step();
  }
  void denoise(float timestep) override {
    ring_.require(KvEvent::kAppend);
    model_.denoise(timestep);
    ++generator_calls_;
  }
  void commit_chunk() override {
    ring_.require(KvEvent::kAppend);
    model_.commit_chunk();  // Error{kPlan} when no denoise call ran
    ring_.append(config_.frames_per_chunk);
    check_in_step();
  }
  void read_output(std::span<float> x) override { model_.read_output_to(x, context_->deadline()); }

  std::uint64_t generator_calls() const override { return generator_calls_; }

 private:
  void check_in_step() const { LOCKSTEP_ASSERT(model_.cached_frames() == ring_.frames_held()); }

  const RankContext* context_;  // the current generation's
  const bool captures_graphs_;
  const ModelConfig config_;
  const std::unique_ptr<GuardedDeviceSums> sums_;
  CudaModel model_;
  KvRing ring_;
  std::uint64_t weight_fingerprint_;  // as of the last handshake
  std::uint64_t generator_calls_ = 0;
};

class GpuTensorPlace final : public TensorPlace {
 public:
  GpuTensorPlace(int device_index, std::chrono::milliseconds timeout) : tensors_(device_index, timeout) {}
  PayloadMemory& memory() override { return tensors_.memory(); }
  void fill_inputs(std::span<float> values, std::uint64_t seed, std::uint64_t stream_id) override {
    tensors_.fill_inputs(values, seed, stream_id);
  }
  void add(std::span<float> values, std::size_t index, float delta) override { tensors_.add(values, index, delta); }
  std::uint64_t digest(std::span<const float> values) override {
    return tensors_.digest(values.data(), values.size_bytes());
  }
  void decode(std::span<const float> output, std::int64_t rows, int dim, double cost_ms) override {
    tensors_.decode(output, rows, dim, cost_ms);
  }

 private:
  CudaChunkTensors tensors_;
};

class CudaGpuRank final : public GpuRank {
 public:
  CudaGpuRank(int device_index, std::chrono::milliseconds timeout)
      : device_index_(device_index),
        stream_(device_index),
        factory_(nccl_options(device_index, stream_.get())),
        place_(device_index, timeout) {}

  int device_index() const override { return device_index_; }
  BackendFactory& nccl_factory() override { return factory_; }
  std::unique_ptr<MeshGenerator> make_generator(const RankContext& context) override {
    return std::make_unique<CudaGenerator>(context, device_index_, stream_.get());
  }
  TensorPlace& tensor_place() override { return place_; }

 private:
  static NcclBackendOptions nccl_options(int device_index, void* stream) {
    NcclBackendOptions options;
    options.device_index = device_index;
    options.compute_stream = stream;
    return options;
  }

  const int device_index_;
  CudaStreamHandle stream_;
  NcclBackendFactory factory_;
  GpuTensorPlace place_;
};

}  // namespace

MachineGpus probe_machine_gpus() { return MachineGpus{true, cuda_device_count()}; }

std::unique_ptr<GpuRank> open_gpu_rank(int device_index, std::chrono::milliseconds timeout) {
  return std::make_unique<CudaGpuRank>(device_index, timeout);
}

}  // namespace lockstep
