// The two CudaTensorParallelOps: identity for TP size 1, NCCL for a mesh.
#include <chrono>
#include <memory>

#include "lockstep/backend.h"
#include "lockstep/cuda_model.h"
#include "lockstep/nccl_backend.h"

namespace lockstep {
namespace {

class SingleRankTpOps final : public CudaTensorParallelOps {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  // A sum over one rank is its own input: nothing to enqueue.
  void all_reduce_sum(void*, std::size_t, DType, void*) override {}
  bool stream_ordered() const override { return true; }
};

class NcclTpOps final : public CudaTensorParallelOps {
 public:
  NcclTpOps(NcclBackend& backend, std::chrono::milliseconds timeout)
      : backend_(backend), timeout_(timeout) {}
  int rank() const override { return backend_.rank(); }
  int size() const override { return backend_.size(); }
  void all_reduce_sum(void* device_data, std::size_t count, DType dtype,
                      void* cuda_stream) override {
    backend_.set_compute_stream(cuda_stream);
    backend_.all_reduce(device_data, count, dtype, ReduceOp::kSum, timeout_);
  }
  bool stream_ordered() const override { return false; }

 private:
  NcclBackend& backend_;
  const std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<CudaTensorParallelOps> make_single_rank_tp_ops() {
  return std::make_unique<SingleRankTpOps>();
}

std::unique_ptr<CudaTensorParallelOps> make_nccl_tp_ops(NcclBackend& backend,
                                                        std::chrono::milliseconds timeout) {
  return std::make_unique<NcclTpOps>(backend, timeout);
}

}  // namespace lockstep
