#include "tensor_place.h"

#include <chrono>
#include <thread>

#include "gpu_rank.h"
#include "lockstep/assert.h"
#include "lockstep/digest.h"
#include "lockstep/reference_model.h"

namespace lockstep {
namespace {

class HostTensorPlace final : public TensorPlace {
 public:
  PayloadMemory& memory() override { return host_payload_memory(); }
  void fill_inputs(std::span<float> values, std::uint64_t seed, std::uint64_t stream_id) override {
    for (std::size_t i = 0; i < values.size(); ++i) {
      values[i] = static_cast<float>(signed_unit(splitmix64(seed ^ (stream_id << 32) ^ i)));
    }
  }
  void add(std::span<float> values, std::size_t index, float delta) override { values[index] += delta; }
  std::uint64_t digest(std::span<const float> values) override {
    return digest_tensor(values.data(), values.size_bytes());
  }
  void decode(std::span<const float> /*output*/, std::int64_t /*rows*/, int /*dim*/, double cost_ms) override {
    if (cost_ms > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(cost_ms));
  }
};

}  // namespace

TensorPlace& host_tensor_place() {
  static HostTensorPlace place;
  return place;
}

TensorPlace& chunk_tensor_place(const RankContext& context) {
  if (!context.payloads_on_device) return host_tensor_place();
  LOCKSTEP_ASSERT(context.gpu != nullptr);
  return context.gpu->tensor_place();
}

PlacedFloats::PlacedFloats(PayloadMemory& memory, std::size_t count) {
  if (count == 0) return;
  const TensorSpec spec{"floats", 0, DType::kF32, TensorShape{static_cast<std::int64_t>(count)},
                        count * sizeof(float)};
  storage_ = allocate_payload(std::span(&spec, 1), memory);
  values_ = {reinterpret_cast<float*>(storage_.tensor(0).data()), count};
}

}  // namespace lockstep
