// Where a rank keeps a chunk's tensors, and what the runtime does to them
// besides the model: host memory, or the rank's GPU when every payload stays
// on the GPUs (--backend nccl with a GPU for Stage 0 too: the boundary runs
// on NCCL, device to device). Stage 0 makes its inputs and decodes its
// outputs there; every rank digests them there (digest_tensor, one value
// wherever it is computed) and fault H1 perturbs them there. Each call
// returns once its work is done. Thread-safe, except decode() (one thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "lockstep/tensor_manifest.h"
#include "rank_context.h"

namespace lockstep {

class TensorPlace {
 public:
  virtual ~TensorPlace() = default;
  virtual PayloadMemory& memory() = 0;
  // Stage 0's deterministic inputs: values[i] = 2u - 1, u from
  // splitmix64(seed ^ (stream_id << 32) ^ i) (the same bits on a GPU).
  virtual void fill_inputs(std::span<float> values, std::uint64_t seed, std::uint64_t stream_id) = 0;
  virtual void add(std::span<float> values, std::size_t index, float delta) = 0;  // fault H1
  virtual std::uint64_t digest(std::span<const float> values) = 0;                // digest_tensor
  // Stage 0's decode of one output chunk [rows × dim], costing about
  // `cost_ms`: a sleep on the host (the CPU reference has no decoder), real
  // convolution and upsampling kernels on a GPU.
  virtual void decode(std::span<const float> output, std::int64_t rows, int dim, double cost_ms) = 0;
};

TensorPlace& host_tensor_place();

// The rank's place: its GPU's when context.payloads_on_device, the host's otherwise.
TensorPlace& chunk_tensor_place(const RankContext& context);

// `count` floats of one place's memory, owned.
class PlacedFloats {
 public:
  PlacedFloats() = default;
  PlacedFloats(PayloadMemory& memory, std::size_t count);
  std::span<float> values() const { return values_; }
  bool empty() const { return values_.empty(); }

 private:
  PayloadBuffers storage_;
  std::span<float> values_;
};

}  // namespace lockstep
