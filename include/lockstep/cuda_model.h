// The CUDA reference model: the generator of docs/reference-model.md in bf16
// storage with fp32 accumulation (cuBLAS + small kernels), its ring-buffer KV
// cache on the device, and optional CUDA-graph capture of a denoise call.
// It mirrors the CPU ReferenceModel (reference_model.h): the same ModelConfig,
// the same shard-only weights, and the same all-reduce sequence per layer per
// generator call — [2N] f32 QK-norm sums, [N·D] attention output, [N·D] MLP
// output — here on device buffers, the two large ones in bf16.
// The KV lifecycle state machine (kv_lifecycle.h) stays with the caller: the
// mesh loop checks each event on its KvCache bookkeeping before calling here.
//
// No CUDA type appears here; streams travel as `void*` (cudaStream_t).
// Threading: a CudaModel and its ops object are used by one thread (the mesh
// rank's generator thread); nothing here is thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/dtype.h"
#include "lockstep/model_config.h"

namespace lockstep {

class NcclBackend;

// The model's tensor-parallel sums over the mesh, on device buffers.
class CudaTensorParallelOps {
 public:
  virtual ~CudaTensorParallelOps() = default;
  virtual int rank() const = 0;  // TP rank r in [0, size())
  virtual int size() const = 0;  // TP size P
  // Sums `count` elements at device_data across the mesh, in place, after the
  // work queued so far on cuda_stream and before the work queued on it later.
  // Blocks at most the implementation's timeout; throws as Backend does.
  virtual void all_reduce_sum(void* device_data, std::size_t count, DType dtype,
                              void* cuda_stream) = 0;
  // True when all_reduce_sum only enqueues on cuda_stream and never waits on
  // the host: CUDA-graph capture of a call requires it.
  virtual bool stream_ordered() const = 0;
  // CUDA-graph capture: the model calls begin_capture() once the stream is
  // capturing and end_capture() before it stops; the sums in between are
  // captured, not run. replay(capture, launch) runs `launch` (the graph's
  // launch) with whatever the sums need around it — guarded sums admit the
  // captured calls to the ledger first and watch their completion after.
  // `capture` is what end_capture() returned. The defaults need nothing.
  virtual void begin_capture() {}
  virtual std::size_t end_capture() { return 0; }
  virtual void replay(std::size_t /*capture*/, const std::function<void()>& launch) { launch(); }
};

// TP size 1: every sum is the identity (stream-ordered, capturable).
std::unique_ptr<CudaTensorParallelOps> make_single_rank_tp_ops();
// Sums through a connected NCCL backend (the `mesh` group), unguarded (no
// gate, no ledger: tests and the probe's baseline), each call bounded by
// `timeout` and blocking until done; not stream-ordered. The backend must
// outlive the ops object.
std::unique_ptr<CudaTensorParallelOps> make_nccl_tp_ops(NcclBackend& backend,
                                                        std::chrono::milliseconds timeout);

// A non-blocking CUDA stream on one device, destroyed with this object. A
// mesh rank creates one and hands it to both the model
// (CudaModelOptions::stream) and its NCCL backend
// (NcclBackendOptions::compute_stream), so collectives order against the
// model's kernels through events, not host waits. Throws Error{kBackend} on
// a CUDA failure.
class CudaStreamHandle {
 public:
  explicit CudaStreamHandle(int device_index);
  ~CudaStreamHandle();
  CudaStreamHandle(const CudaStreamHandle&) = delete;
  CudaStreamHandle& operator=(const CudaStreamHandle&) = delete;
  void* get() const { return stream_; }  // a cudaStream_t

 private:
  void* stream_ = nullptr;
};

struct CudaModelOptions {
  int device_index = 0;
  // Capture each denoise call as a CUDA graph and replay it (one graph per
  // number of cached frames). Part of the parity record (SPEC §4G): it must
  // be equal on every rank. REQUIRES a stream_ordered() ops object.
  bool graph_capture = false;
  // The stream (cudaStream_t) all of the model's work runs on; nullptr: the
  // model creates its own. Borrowed: it must outlive the model.
  void* stream = nullptr;
};

class CudaModel {
 public:
  // Generates this TP rank's weight shard (rank and size from `tp`) on the
  // device and allocates every buffer (nothing is allocated later). Blocking.
  // Throws Error{kInvalidArgument} when P does not divide the heads or graph
  // capture is asked with non-stream-ordered ops, Error{kBackend} on a CUDA
  // or cuBLAS failure. `tp` must outlive the model.
  CudaModel(const ModelConfig& config, std::uint64_t seed, CudaTensorParallelOps& tp,
            CudaModelOptions options);
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  // Loads the chunk's latents [N × D] (fp32, host or device memory) as the
  // current x.
  // Throws Error{kSchema} on a size other than N·D.
  void set_latents(std::span<const float> latents);
  // One generator call x ← F(x, t, cache); never mutates the cache, keeps this
  // call's k, v for commit_last_call(). Enqueues and returns, except for the
  // waits inside non-stream-ordered all-reduces.
  void denoise(float t);
  // Appends the last denoise call's k, v to the cache as the chunk's frames;
  // the ring evicts the oldest frames beyond the window. Throws Error{kPlan}
  // when no denoise call ran since the last commit or recompute.
  void commit_chunk();
  // The recompute call: runs the layers with t = 0 over `context`
  // [C·tokens_per_frame × D], C in [1, window], on an empty cache, then
  // replaces the cache with its k, v. x is left untouched. Throws
  // Error{kSchema} for a context of another size.
  void recompute(std::span<const float> context);
  // Empties the cache (hard cut).
  void reset_cache();
  // The bias added to scores of cached positions (SPEC §4F "bias change").
  void set_attention_bias(float bias);

  // Waits for every queued call, polling a CUDA event (never a blocking
  // synchronize), then returns x [N × D] as fp32. Throws Error{kTimeout}
  // when the device is not done within timeout.
  std::vector<float> read_output(std::chrono::milliseconds timeout);
  // The same into `out` [N × D], host or device memory (a device `out` is
  // copied on the device: the output never crosses to the host). Throws
  // Error{kSchema} for another size.
  void read_output_to(std::span<float> out, std::chrono::milliseconds timeout);

  // Hands `visit` the weights as the device holds them, in the byte order
  // of weight_shard_fingerprint(..., WeightStorage::kBf16Matrices) (each
  // call one piece; the concatenation is the whole shard), so the caller can
  // fingerprint what was actually loaded (H2). Each device wait is bounded
  // by timeout (Error{kTimeout}).
  void visit_weights(const std::function<void(std::span<const std::uint8_t>)>& visit,
                     std::chrono::milliseconds timeout);

  int cached_frames() const;
  bool graph_capture() const;
  const ModelConfig& config() const;
  void* stream() const;  // the cudaStream_t all of the model's work runs on

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lockstep
