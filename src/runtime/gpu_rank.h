// What a rank that drives a GPU needs for `--backend nccl` (issue 8): the
// NCCL factory for its mesh group and the CUDA model, sharing one stream so
// collectives order against the model's kernels through events. Built from
// gpu_rank_cuda.cc when nvcc was found, from gpu_rank_none.cc otherwise, so
// the rest of the runtime has no CUDA dependency and no #ifdef.
#pragma once

#include <chrono>
#include <memory>

#include "lockstep/backend.h"
#include "mesh_generator.h"
#include "rank_context.h"

namespace lockstep {

class TensorPlace;

class GpuRank {
 public:
  virtual ~GpuRank() = default;
  virtual int device_index() const = 0;
  // Connects NCCL communicators on this rank's device, ordered against the
  // shared stream. Lives as long as this object.
  virtual BackendFactory& nccl_factory() = 0;
  // The CUDA model (bf16, cuBLAS) on the shared stream; its all-reduces go
  // through the guarded communicator's `mesh` group on device buffers.
  virtual std::unique_ptr<MeshGenerator> make_generator(const RankContext& context) = 0;
  // This GPU as the place of a chunk's tensors (tensor_place.h), for a rank
  // whose payloads stay on the GPUs.
  virtual TensorPlace& tensor_place() = 0;
};

// Selects `device_index` and creates the shared stream; device waits of the
// tensor place are bounded by `timeout`. Throws
// Error{kInvalidArgument} when this binary has no CUDA, Error{kBackend} on
// a CUDA failure.
std::unique_ptr<GpuRank> open_gpu_rank(int device_index, std::chrono::milliseconds timeout);

}  // namespace lockstep
