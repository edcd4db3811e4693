// The seam between a mesh rank's protocol code (MeshMember) and the model it
// drives: the CPU reference model on a Gloo mesh, or the CUDA one on an NCCL
// mesh (gpu_rank.h). Both keep the replicated KV bookkeeping in a KvRing, so
// the lifecycle checks (F3), the per-chunk KV digest (F2) and the weight
// fingerprint check (H2) are the same code whatever runs the layers.
//
// Every check that can fail (lifecycle, sizes, plan order) happens before a
// call's first collective, and the bookkeeping changes only after the call
// completed, as in ReferenceModel.
//
// Threads: one thread (the mesh rank's comm thread) owns an instance.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "lockstep/kv_ring.h"
#include "lockstep/reference_model.h"
#include "rank_context.h"

namespace lockstep {

class MeshGenerator {
 public:
  virtual ~MeshGenerator() = default;

  // Fingerprint of the weights, by weight_storage()'s rule.
  virtual std::uint64_t weight_fingerprint() const = 0;

  // False for a generator that holds its generation's communicator calls (a
  // CUDA model that captured graphs: their NCCL nodes belong to that
  // generation's communicators). Such a generator is released at the end of
  // its generation, before the communicator is (rank_main.cc); destroyed
  // after it, its graphs hung the rank at exit.
  virtual bool outlives_generation() const = 0;
  // Warm recovery: binds the generator to the next generation's context (its
  // communicator); the weights carry over and the caller runs the handshake
  // on them again. REQUIRES: outlives_generation().
  virtual void rebind(const RankContext& context) = 0;
  virtual WeightStorage weight_storage() const = 0;

  // The KV events of kv_ring.h, applied to the bookkeeping and the tensors.
  virtual const KvRing& kv() const = 0;
  virtual void kv_init(std::uint64_t cache_epoch, std::int64_t start_frame, float attention_bias) = 0;
  virtual void kv_hard_cut() = 0;
  virtual void kv_set_attention_bias(float attention_bias) = 0;

  // One chunk: load its latents, then recompute (optional) and the denoise
  // calls, commit, and read the output back into `x` (the latents' size).
  // The spans are in the rank's tensor place: host memory, or the GPU's for
  // the CUDA model when payloads stay on the device (tensor_place.h).
  virtual void load(std::span<const float> x) = 0;
  virtual void recompute(std::span<const float> context) = 0;
  virtual void denoise(float timestep) = 0;
  virtual void commit_chunk() = 0;
  virtual void read_output(std::span<float> x) = 0;

  // Generator calls completed (denoise + recompute) since construction.
  virtual std::uint64_t generator_calls() const = 0;
};

// The CPU reference model (fp32, OpenBLAS) whose all-reduces go through the
// guarded communicator's `mesh` group.
std::unique_ptr<MeshGenerator> make_cpu_generator(const RankContext& context);

}  // namespace lockstep
