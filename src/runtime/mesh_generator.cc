#include "mesh_generator.h"

#include <algorithm>
#include <vector>

#include "lockstep/assert.h"
#include "lockstep/model_config.h"
#include "lockstep/tensor_parallel_ops.h"

namespace lockstep {
namespace {

// The model's all-reduces, through the guarded communicator.
class GuardedHostSums final : public TensorParallelOps {
 public:
  explicit GuardedHostSums(const RankContext& context) : context_(&context) {}
  void all_reduce_sum(float* data, std::size_t count) override {
    context_->comm.all_reduce(kGroupMesh, data, count, DType::kF32, ReduceOp::kSum, context_->deadline());
  }
  void rebind(const RankContext& context) { context_ = &context; }

 private:
  const RankContext* context_;  // the current generation's
};

class CpuGenerator final : public MeshGenerator {
 public:
  explicit CpuGenerator(const RankContext& context)
      : sums_(context),
        model_(model_config_from_name(context.config.model), context.mesh_rank(), context.config.mesh_size(),
               context.config.seed, sums_) {}

  std::uint64_t weight_fingerprint() const override { return model_.weight_fingerprint(); }
  bool outlives_generation() const override { return true; }
  void rebind(const RankContext& context) override { sums_.rebind(context); }
  WeightStorage weight_storage() const override { return WeightStorage::kF32; }

  const KvRing& kv() const override { return model_.cache().ring(); }
  void kv_init(std::uint64_t cache_epoch, std::int64_t start_frame, float attention_bias) override {
    model_.cache().init(cache_epoch, start_frame, attention_bias);
  }
  void kv_hard_cut() override { model_.cache().hard_cut(); }
  void kv_set_attention_bias(float attention_bias) override { model_.cache().set_attention_bias(attention_bias); }

  void load(std::span<const float> x) override { x_.assign(x.begin(), x.end()); }
  void recompute(std::span<const float> context) override { model_.recompute(context); }
  void denoise(float timestep) override { model_.denoise(x_, timestep); }
  void commit_chunk() override { model_.commit_chunk(); }
  void read_output(std::span<float> x) override {
    LOCKSTEP_ASSERT(x.size() == x_.size());
    std::copy(x_.begin(), x_.end(), x.begin());
  }

  std::uint64_t generator_calls() const override { return model_.generator_calls(); }

 private:
  GuardedHostSums sums_;
  ReferenceModel model_;
  std::vector<float> x_;  // the chunk being denoised
};

}  // namespace

std::unique_ptr<MeshGenerator> make_cpu_generator(const RankContext& context) {
  return std::make_unique<CpuGenerator>(context);
}

}  // namespace lockstep
