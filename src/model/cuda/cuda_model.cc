#include "lockstep/cuda_model.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "backends/nccl/cuda_check.h"
#include "model/cuda/device_buffer.h"
#include "model/cuda/event_wait.h"
#include "model/cuda/gemm.h"
#include "model/cuda/kernels.h"
#include "lockstep/assert.h"
#include "lockstep/error.h"
#include "lockstep/nccl_backend.h"

namespace lockstep {
namespace {

using cuda_detail::check_cublas;
using cuda_detail::check_cuda;
using cuda_model::bf16;
using cuda_model::DeviceArray;
using cuda_model::PinnedArray;

// Score blocks (fp32 [tokens × keys] per head) are computed for this many
// bytes of heads at a time, so dit14b's recompute (8640 × 8640 per head) fits.
constexpr std::size_t kScoresBytesMax = std::size_t{2} << 30;
// cuBLAS gets a fixed workspace so graph capture never allocates and eager
// and captured calls pick the same algorithms.
constexpr std::size_t kCublasWorkspaceBytes = std::size_t{32} << 20;
// How long a host wait for the device to free a staging buffer may take.
constexpr std::chrono::milliseconds kStagingWaitTimeout{60000};

// Tensor ids of docs/reference-model.md: layer · 16 + k.
enum TensorKind : std::uint64_t {
  kWq = 0,
  kWk = 1,
  kWv = 2,
  kWo = 3,
  kW1 = 4,
  kW2 = 5,
  kGainAttn = 6,
  kGainMlp = 7,
  kGainQ = 8,
  kGainK = 9,
  kTimeEmbed = 10,
};
constexpr std::uint64_t kTensorsPerLayer = 16;

std::uint64_t tensor_id(int layer, TensorKind kind) {
  return static_cast<std::uint64_t>(layer) * kTensorsPerLayer + kind;
}

// fan_in of the doc: a matrix's input width; 1 for t_embed (as the CPU model).
constexpr double kTimeEmbedFanIn = 1.0;

constexpr const char* kWho = "cuda model";  // how its timeouts name it

// One layer's weight shard and KV ring (heads sharded across the mesh).
struct LayerState {
  DeviceArray<bf16> wq, wk, wv, wo, w1, w2;
  DeviceArray<float> gain_attn, gain_mlp, gain_q, gain_k;
  DeviceArray<bf16> ring_k, ring_v;        // [window · tokens/frame × D/P]
  DeviceArray<bf16> pending_k, pending_v;  // the last call's k, v [tokens_max × D/P]
};

// Makes `device` current before the members below create anything on it.
struct DeviceSelection {
  explicit DeviceSelection(int device) { check_cuda(cudaSetDevice(device), "cudaSetDevice"); }
};

}  // namespace

struct CudaModel::Impl {
  ModelConfig config;
  std::uint64_t seed;
  CudaTensorParallelOps& tp;
  CudaModelOptions options;
  DeviceSelection device;
  std::unique_ptr<cuda_model::CudaStream> stream_owner;  // unless options.stream is borrowed
  cudaStream_t stream;
  cuda_model::CudaEvent done_owner;
  cudaEvent_t done;  // marks the end of the last host<->device staging copy
  cuda_model::CublasHandle cublas_owner;
  cublasHandle_t cublas;
  int local_dim = 0;     // D/P: this rank's columns of q, k, v
  int local_hidden = 0;  // 4D/P
  int local_heads = 0;
  int tokens_max = 0;            // max(N, window · tokens/frame): a recompute may be longer
  int keys_max = 0;              // window · tokens/frame + tokens_max
  std::size_t score_floats = 0;  // capacity of `scores` (and `probs`)

  DeviceArray<unsigned char> cublas_workspace;
  std::vector<LayerState> layers;
  DeviceArray<float> t_embed, x, x_recompute, q_f32, k_f32, v_f32, mlp_f32, scores;
  DeviceArray<float> norm_sums;  // [2 · tokens]: Σq² then Σk², one all-reduce
  DeviceArray<bf16> h, q, keys, values, probs, attn_out, partial, mlp_bf16;
  DeviceArray<cuda_model::CallParams> params;
  DeviceArray<int> ring_slots;  // physical frame slot of the i-th oldest frame
  std::unique_ptr<PinnedArray<float>> staging;
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    std::size_t capture = 0;  // the sums' handle for it (CudaTensorParallelOps::end_capture)
  };
  std::map<int, Graph> graphs;  // denoise graph per number of cached frames

  int ring_head = 0;
  int ring_frames = 0;
  int last_call_frames = 0;  // frames a commit would append; 0 = nothing to commit
  float attention_bias = 0.0f;

  Impl(const ModelConfig& config_in, std::uint64_t seed_in, CudaTensorParallelOps& tp_in,
       CudaModelOptions options_in);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  void validate() const;
  void allocate();
  void generate_weights();
  void run_call(float* x_in, int tokens, int cached_frames);
  void attention_block(LayerState& layer, float* x_in, int tokens, int cached_frames);
  void attend(int tokens, int keys_total, int cached_keys);
  void mlp_block(LayerState& layer, float* x_in, int tokens);
  void normalize_qk(LayerState& layer, int tokens, bf16* k_out);
  const Graph& graph_for(int cached_frames);
  void append_frames(int frames);
  void upload_host(std::span<const float> host, float* device_ptr, const char* what);
};

CudaModel::Impl::Impl(const ModelConfig& config_in, std::uint64_t seed_in,
                      CudaTensorParallelOps& tp_in, CudaModelOptions options_in)
    : config(config_in),
      seed(seed_in),
      tp(tp_in),
      options(options_in),
      device(options_in.device_index),
      stream_owner(options_in.stream == nullptr ? std::make_unique<cuda_model::CudaStream>() : nullptr),
      stream(stream_owner != nullptr ? stream_owner->get() : static_cast<cudaStream_t>(options_in.stream)),
      done(done_owner.get()),
      cublas_owner(stream),
      cublas(cublas_owner.get()) {
  validate();
  local_dim = config.dim / tp.size();
  local_hidden = config.mlp_hidden() / tp.size();
  local_heads = config.heads / tp.size();
  const std::size_t chunk_tokens = config.tokens_per_chunk();
  const std::size_t window_tokens =
      static_cast<std::size_t>(config.window_frames) * config.tokens_per_frame;
  tokens_max = static_cast<int>(std::max(chunk_tokens, window_tokens));
  keys_max = static_cast<int>(window_tokens + chunk_tokens);
  // Scores of one head: a denoise call (N × [window; N]) or a recompute over a
  // full window (window × window), whichever is larger.
  const std::size_t head_floats_max =
      std::max(chunk_tokens * (window_tokens + chunk_tokens), window_tokens * window_tokens);
  // At least one head of the largest call; all heads when they fit the budget.
  score_floats = std::clamp<std::size_t>(kScoresBytesMax / sizeof(float), head_floats_max,
                                         head_floats_max * local_heads);
  allocate();
  check_cublas(cublasSetWorkspace(cublas, cublas_workspace.get(), cublas_workspace.count()),
               "cublasSetWorkspace");
  generate_weights();
}

CudaModel::Impl::~Impl() {
  for (auto& [frames, graph] : graphs) cudaGraphExecDestroy(graph.exec);
}

void CudaModel::Impl::validate() const {
  const std::string where = "cuda model '" + config.name + "'";
  if (config.dim <= 0 || config.heads <= 0 || config.dim % config.heads != 0 ||
      config.layers <= 0 || config.tokens_per_frame <= 0 || config.frames_per_chunk <= 0 ||
      config.window_frames <= 0) {
    throw Error(ErrorCode::kInvalidArgument,
                where + ": sizes must be positive and dim % heads == 0");
  }
  if (tp.size() <= 0 || config.heads % tp.size() != 0) {
    throw Error(ErrorCode::kInvalidArgument, where + ": heads " + std::to_string(config.heads) +
                                                 " not divisible by TP size " +
                                                 std::to_string(tp.size()));
  }
  if (options.graph_capture && !tp.stream_ordered()) {
    throw Error(
        ErrorCode::kInvalidArgument,
        where + ": graph capture needs stream-ordered all-reduces; these ops wait on the host");
  }
}

void CudaModel::Impl::allocate() {
  const std::size_t n = tokens_max;
  const std::size_t d = config.dim;
  const std::size_t window_tokens =
      static_cast<std::size_t>(config.window_frames) * config.tokens_per_frame;
  cublas_workspace = DeviceArray<unsigned char>(kCublasWorkspaceBytes);
  t_embed = DeviceArray<float>(d);
  x = DeviceArray<float>(n * d);
  x_recompute = DeviceArray<float>(n * d);
  for (auto* buffer : {&q_f32, &k_f32, &v_f32}) *buffer = DeviceArray<float>(n * local_dim);
  norm_sums = DeviceArray<float>(2 * n);
  mlp_f32 = DeviceArray<float>(n * local_hidden);
  scores = DeviceArray<float>(score_floats);
  probs = DeviceArray<bf16>(score_floats);
  h = DeviceArray<bf16>(n * d);
  q = DeviceArray<bf16>(n * local_dim);
  keys = DeviceArray<bf16>(static_cast<std::size_t>(keys_max) * local_dim);
  values = DeviceArray<bf16>(static_cast<std::size_t>(keys_max) * local_dim);
  attn_out = DeviceArray<bf16>(n * local_dim);
  partial = DeviceArray<bf16>(n * d);
  mlp_bf16 = DeviceArray<bf16>(n * local_hidden);
  staging = std::make_unique<PinnedArray<float>>(n * d);
  params = DeviceArray<cuda_model::CallParams>(1);
  ring_slots = DeviceArray<int>(config.window_frames);
  layers.resize(config.layers);
  for (LayerState& layer : layers) {
    layer.wq = DeviceArray<bf16>(d * local_dim);
    layer.wk = DeviceArray<bf16>(d * local_dim);
    layer.wv = DeviceArray<bf16>(d * local_dim);
    layer.wo = DeviceArray<bf16>(static_cast<std::size_t>(local_dim) * d);
    layer.w1 = DeviceArray<bf16>(d * local_hidden);
    layer.w2 = DeviceArray<bf16>(static_cast<std::size_t>(local_hidden) * d);
    layer.gain_attn = DeviceArray<float>(d);
    layer.gain_mlp = DeviceArray<float>(d);
    layer.gain_q = DeviceArray<float>(local_dim);
    layer.gain_k = DeviceArray<float>(local_dim);
    for (auto* ring : {&layer.ring_k, &layer.ring_v})
      *ring = DeviceArray<bf16>(window_tokens * local_dim);
    for (auto* pending : {&layer.pending_k, &layer.pending_v})
      *pending = DeviceArray<bf16>(n * local_dim);
  }
}

// Shards are slices of the full matrices: column-parallel tensors offset
// their columns by this rank's range, row-parallel ones their rows.
void CudaModel::Impl::generate_weights() {
  const int d = config.dim;
  const int col0 = tp.rank() * local_dim;
  const int hidden0 = tp.rank() * local_hidden;
  const double fan_in_d = d;
  const double fan_in_hidden = config.mlp_hidden();
  cuda_model::generate_scaled_vector(t_embed.get(), d, 0, seed, tensor_id(0, kTimeEmbed),
                                     kTimeEmbedFanIn, stream);
  for (int l = 0; l < config.layers; ++l) {
    LayerState& layer = layers[l];
    const auto matrix = [&](DeviceArray<bf16>& out, TensorKind kind, int rows, int cols, int row0,
                            int c0, double fan_in) {
      cuda_model::generate_matrix(out.get(), rows, cols, row0, c0, seed, tensor_id(l, kind), fan_in,
                                  stream);
    };
    matrix(layer.wq, kWq, d, local_dim, 0, col0, fan_in_d);
    matrix(layer.wk, kWk, d, local_dim, 0, col0, fan_in_d);
    matrix(layer.wv, kWv, d, local_dim, 0, col0, fan_in_d);
    matrix(layer.wo, kWo, local_dim, d, col0, 0, fan_in_d);
    matrix(layer.w1, kW1, d, local_hidden, 0, hidden0, fan_in_d);
    matrix(layer.w2, kW2, local_hidden, d, hidden0, 0, fan_in_hidden);
    const auto gain = [&](DeviceArray<float>& out, TensorKind kind, int n, int c0) {
      cuda_model::generate_gain(out.get(), n, c0, seed, tensor_id(l, kind), stream);
    };
    gain(layer.gain_attn, kGainAttn, d, 0);
    gain(layer.gain_mlp, kGainMlp, d, 0);
    gain(layer.gain_q, kGainQ, local_dim, col0);
    gain(layer.gain_k, kGainK, local_dim, col0);
  }
  check_cuda(cudaEventRecord(done, stream), "record weights event");
  cuda_model::wait_event(done, kStagingWaitTimeout, kWho, "weight generation");
}

void CudaModel::Impl::run_call(float* x_in, int tokens, int cached_frames) {
  cuda_model::add_time_embed(x_in, t_embed.get(), params.get(), tokens, config.dim, stream);
  for (LayerState& layer : layers) {
    attention_block(layer, x_in, tokens, cached_frames);
    mlp_block(layer, x_in, tokens);
  }
}

// q, k ← q, k / sqrt(allreduce(Σ q²)/D + eps) ⊙ g (QK-norm over the full D);
// one [2N] all-reduce for both, as the CPU model issues it.
void CudaModel::Impl::normalize_qk(LayerState& layer, int tokens, bf16* k_out) {
  float* sums_q = norm_sums.get();
  float* sums_k = norm_sums.get() + tokens;
  cuda_model::row_sum_squares(q_f32.get(), sums_q, tokens, local_dim, stream);
  cuda_model::row_sum_squares(k_f32.get(), sums_k, tokens, local_dim, stream);
  tp.all_reduce_sum(norm_sums.get(), 2 * static_cast<std::size_t>(tokens), DType::kF32, stream);
  cuda_model::qk_normalize(q_f32.get(), sums_q, layer.gain_q.get(), q.get(), tokens, local_dim,
                           config.dim, stream);
  cuda_model::qk_normalize(k_f32.get(), sums_k, layer.gain_k.get(), k_out, tokens, local_dim,
                           config.dim, stream);
}

void CudaModel::Impl::attention_block(LayerState& layer, float* x_in, int tokens,
                                      int cached_frames) {
  const int d = config.dim;
  const int cached_keys = cached_frames * config.tokens_per_frame;
  const std::size_t call_offset = static_cast<std::size_t>(cached_keys) * local_dim;
  const std::size_t call_bytes = static_cast<std::size_t>(tokens) * local_dim * sizeof(bf16);
  cuda_model::rmsnorm_gain(x_in, layer.gain_attn.get(), h.get(), tokens, d, stream);
  cuda_model::gemm_rm(cublas, tokens, local_dim, d, h.get(), d, layer.wq.get(), local_dim,
                      q_f32.get(), CUDA_R_32F, local_dim);
  cuda_model::gemm_rm(cublas, tokens, local_dim, d, h.get(), d, layer.wk.get(), local_dim,
                      k_f32.get(), CUDA_R_32F, local_dim);
  cuda_model::gemm_rm(cublas, tokens, local_dim, d, h.get(), d, layer.wv.get(), local_dim,
                      v_f32.get(), CUDA_R_32F, local_dim);
  // Keys and values are [cached frames, oldest first ; this call's tokens].
  normalize_qk(layer, tokens, keys.get() + call_offset);
  cuda_model::to_bf16(v_f32.get(), values.get() + call_offset,
                      static_cast<std::size_t>(tokens) * local_dim, stream);
  cuda_model::gather_frames(layer.ring_k.get(), ring_slots.get(), keys.get(), cached_frames,
                            config.tokens_per_frame, local_dim, stream);
  cuda_model::gather_frames(layer.ring_v.get(), ring_slots.get(), values.get(), cached_frames,
                            config.tokens_per_frame, local_dim, stream);
  check_cuda(cudaMemcpyAsync(layer.pending_k.get(), keys.get() + call_offset, call_bytes,
                             cudaMemcpyDeviceToDevice, stream),
             "keep k");
  check_cuda(cudaMemcpyAsync(layer.pending_v.get(), values.get() + call_offset, call_bytes,
                             cudaMemcpyDeviceToDevice, stream),
             "keep v");
  attend(tokens, cached_keys + tokens, cached_keys);
  cuda_model::gemm_rm(cublas, tokens, d, local_dim, attn_out.get(), local_dim, layer.wo.get(), d,
                      partial.get(), CUDA_R_16BF, d);
  tp.all_reduce_sum(partial.get(), static_cast<std::size_t>(tokens) * d, DType::kBF16, stream);
  cuda_model::add_into(x_in, partial.get(), static_cast<std::size_t>(tokens) * d, stream);
}

// softmax(q·Kᵀ/sqrt(hd) + bias)·V per local head, as many heads at a time as
// the score buffer holds for this call's shape.
void CudaModel::Impl::attend(int tokens, int keys_total, int cached_keys) {
  const int hd = config.head_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const std::size_t head_floats = static_cast<std::size_t>(tokens) * keys_total;
  const int heads_per_batch = static_cast<int>(
      std::min<std::size_t>(score_floats / head_floats, static_cast<std::size_t>(local_heads)));
  LOCKSTEP_ASSERT(heads_per_batch >= 1);
  for (int head0 = 0; head0 < local_heads; head0 += heads_per_batch) {
    const int batch = std::min(heads_per_batch, local_heads - head0);
    const std::size_t column = static_cast<std::size_t>(head0) * hd;
    cuda_model::attention_scores(cublas, batch, tokens, keys_total, hd, q.get() + column,
                                 keys.get() + column, local_dim, scale, scores.get());
    cuda_model::softmax_with_bias(scores.get(), probs.get(), batch * tokens, keys_total,
                                  cached_keys, params.get(), stream);
    cuda_model::attention_values(cublas, batch, tokens, keys_total, hd, probs.get(),
                                 values.get() + column, local_dim, attn_out.get() + column);
  }
}

void CudaModel::Impl::mlp_block(LayerState& layer, float* x_in, int tokens) {
  const int d = config.dim;
  const std::size_t hidden_count = static_cast<std::size_t>(tokens) * local_hidden;
  cuda_model::rmsnorm_gain(x_in, layer.gain_mlp.get(), h.get(), tokens, d, stream);
  cuda_model::gemm_rm(cublas, tokens, local_hidden, d, h.get(), d, layer.w1.get(), local_hidden,
                      mlp_f32.get(), CUDA_R_32F, local_hidden);
  cuda_model::gelu_tanh(mlp_f32.get(), mlp_bf16.get(), hidden_count, stream);
  cuda_model::gemm_rm(cublas, tokens, d, local_hidden, mlp_bf16.get(), local_hidden, layer.w2.get(),
                      d, partial.get(), CUDA_R_16BF, d);
  tp.all_reduce_sum(partial.get(), static_cast<std::size_t>(tokens) * d, DType::kBF16, stream);
  cuda_model::add_into(x_in, partial.get(), static_cast<std::size_t>(tokens) * d, stream);
}

// The graph holds pointers and shapes only; t and the bias live in `params`
// and the ring order in `ring_slots`, so one graph serves every call with the
// same number of cached frames.
const CudaModel::Impl::Graph& CudaModel::Impl::graph_for(int cached_frames) {
  const auto found = graphs.find(cached_frames);
  if (found != graphs.end()) return found->second;
  // Thread-local mode: the completion tracker's thread keeps querying events
  // of earlier calls while this thread captures.
  check_cuda(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "begin capture");
  cudaGraph_t graph = nullptr;
  std::size_t capture = 0;
  bool sums_capturing = false;
  try {
    tp.begin_capture();
    sums_capturing = true;
    run_call(x.get(), config.tokens_per_chunk(), cached_frames);
    sums_capturing = false;
    capture = tp.end_capture();
  } catch (const Error&) {
    if (sums_capturing) tp.end_capture();  // later sums must not take the capture path
    cudaStreamEndCapture(stream, &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    throw;
  }
  check_cuda(cudaStreamEndCapture(stream, &graph), "end capture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  check_cuda(status, "instantiate denoise graph");
  return graphs.emplace(cached_frames, Graph{exec, capture}).first->second;
}

void CudaModel::Impl::append_frames(int frames) {
  const std::size_t frame_count = static_cast<std::size_t>(config.tokens_per_frame) * local_dim;
  const std::size_t frame_bytes = frame_count * sizeof(bf16);
  for (int f = 0; f < frames; ++f) {
    if (ring_frames == config.window_frames) {
      ring_head = (ring_head + 1) % config.window_frames;  // evict the oldest frame
      --ring_frames;
    }
    const int slot = (ring_head + ring_frames) % config.window_frames;
    for (LayerState& layer : layers) {
      check_cuda(cudaMemcpyAsync(layer.ring_k.get() + slot * frame_count,
                                 layer.pending_k.get() + f * frame_count, frame_bytes,
                                 cudaMemcpyDeviceToDevice, stream),
                 "append k frame");
      check_cuda(cudaMemcpyAsync(layer.ring_v.get() + slot * frame_count,
                                 layer.pending_v.get() + f * frame_count, frame_bytes,
                                 cudaMemcpyDeviceToDevice, stream),
                 "append v frame");
    }
    ++ring_frames;
  }
  cuda_model::set_ring_slots(ring_slots.get(), ring_head, ring_frames, config.window_frames,
                             stream);
}

// Copies through pinned staging so the copy is truly asynchronous; waits
// (bounded) for the previous use of the staging buffer first.
void CudaModel::Impl::upload_host(std::span<const float> host, float* device_ptr,
                                  const char* what) {
  if (cuda_detail::is_device_pointer(host.data())) {  // a payload that stayed on a GPU
    check_cuda(cudaMemcpyAsync(device_ptr, host.data(), host.size_bytes(), cudaMemcpyDefault, stream), what);
    return;
  }
  cuda_model::wait_event(done, kStagingWaitTimeout, kWho, what);
  std::memcpy(staging->get(), host.data(), host.size() * sizeof(float));
  check_cuda(cudaMemcpyAsync(device_ptr, staging->get(), host.size() * sizeof(float),
                             cudaMemcpyHostToDevice, stream),
             what);
  check_cuda(cudaEventRecord(done, stream), what);
}

CudaStreamHandle::CudaStreamHandle(int device_index) {
  check_cuda(cudaSetDevice(device_index), "cudaSetDevice");
  cudaStream_t stream = nullptr;
  check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "create stream");
  stream_ = stream;
}

CudaStreamHandle::~CudaStreamHandle() { cudaStreamDestroy(static_cast<cudaStream_t>(stream_)); }

CudaModel::CudaModel(const ModelConfig& config, std::uint64_t seed, CudaTensorParallelOps& tp,
                     CudaModelOptions options)
    : impl_(std::make_unique<Impl>(config, seed, tp, options)) {}

CudaModel::~CudaModel() = default;

void CudaModel::set_latents(std::span<const float> latents) {
  const std::size_t expected =
      static_cast<std::size_t>(impl_->config.tokens_per_chunk()) * impl_->config.dim;
  if (latents.size() != expected) {
    throw Error(ErrorCode::kSchema, "cuda model set_latents: " + std::to_string(latents.size()) +
                                        " values, expected N·D = " + std::to_string(expected));
  }
  impl_->upload_host(latents, impl_->x.get(), "upload latents");
}

void CudaModel::denoise(float t) {
  Impl& m = *impl_;
  check_cuda(cudaSetDevice(m.options.device_index), "cudaSetDevice");
  cuda_model::set_call_params(m.params.get(), t, m.attention_bias, m.stream);
  if (m.options.graph_capture) {
    const Impl::Graph& graph = m.graph_for(m.ring_frames);
    m.tp.replay(graph.capture, [&] { check_cuda(cudaGraphLaunch(graph.exec, m.stream), "launch denoise graph"); });
  } else {
    m.run_call(m.x.get(), m.config.tokens_per_chunk(), m.ring_frames);
  }
  m.last_call_frames = m.config.frames_per_chunk;
}

void CudaModel::commit_chunk() {
  if (impl_->last_call_frames == 0) {
    throw Error(ErrorCode::kPlan, "cuda model commit_chunk: no denoise call since the last commit");
  }
  impl_->append_frames(impl_->last_call_frames);
  impl_->last_call_frames = 0;
}

void CudaModel::recompute(std::span<const float> context) {
  Impl& m = *impl_;
  const std::size_t frame_values =
      static_cast<std::size_t>(m.config.tokens_per_frame) * m.config.dim;
  const std::size_t frames = context.size() / frame_values;
  if (context.size() % frame_values != 0 || frames < 1 ||
      frames > static_cast<std::size_t>(m.config.window_frames)) {
    throw Error(ErrorCode::kSchema,
                "cuda model recompute: context of " + std::to_string(context.size()) +
                    " values is not C frames of tokens/frame·D with 1 <= C <= window " +
                    std::to_string(m.config.window_frames));
  }
  check_cuda(cudaSetDevice(m.options.device_index), "cudaSetDevice");
  m.upload_host(context, m.x_recompute.get(), "upload recompute context");
  cuda_model::set_call_params(m.params.get(), 0.0f, m.attention_bias, m.stream);
  m.run_call(m.x_recompute.get(), static_cast<int>(frames) * m.config.tokens_per_frame, 0);
  reset_cache();
  m.append_frames(static_cast<int>(frames));
  m.last_call_frames = 0;
}

void CudaModel::reset_cache() {
  impl_->ring_head = 0;
  impl_->ring_frames = 0;
  impl_->last_call_frames = 0;
}

void CudaModel::set_attention_bias(float bias) { impl_->attention_bias = bias; }

std::vector<float> CudaModel::read_output(std::chrono::milliseconds timeout) {
  std::vector<float> output(static_cast<std::size_t>(impl_->config.tokens_per_chunk()) * impl_->config.dim);
  read_output_to(output, timeout);
  return output;
}

void CudaModel::read_output_to(std::span<float> out, std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  const std::size_t count = static_cast<std::size_t>(m.config.tokens_per_chunk()) * m.config.dim;
  if (out.size() != count) {
    throw Error(ErrorCode::kSchema, "cuda model read_output: " + std::to_string(out.size()) +
                                        " values, expected N·D = " + std::to_string(count));
  }
  check_cuda(cudaSetDevice(m.options.device_index), "cudaSetDevice");
  const bool on_device = cuda_detail::is_device_pointer(out.data());
  if (!on_device) cuda_model::wait_event(m.done, timeout, kWho, "staging buffer");
  check_cuda(cudaMemcpyAsync(on_device ? out.data() : m.staging->get(), m.x.get(), count * sizeof(float),
                             cudaMemcpyDefault, m.stream),
             "download x");
  check_cuda(cudaEventRecord(m.done, m.stream), "record output event");
  cuda_model::wait_event(m.done, timeout, kWho, "read_output");
  if (!on_device) std::copy(m.staging->get(), m.staging->get() + count, out.begin());
}

void CudaModel::visit_weights(const std::function<void(std::span<const std::uint8_t>)>& visit,
                              std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  check_cuda(cudaSetDevice(m.options.device_index), "cudaSetDevice");
  auto* host = reinterpret_cast<std::uint8_t*>(m.staging->get());
  const std::size_t capacity_bytes = m.staging->count() * sizeof(float);
  const auto download = [&](const void* device_data, std::size_t size_bytes) {
    for (std::size_t offset = 0; offset < size_bytes; offset += capacity_bytes) {
      const std::size_t piece_bytes = std::min(capacity_bytes, size_bytes - offset);
      cuda_model::wait_event(m.done, timeout, kWho, "staging buffer");
      check_cuda(cudaMemcpyAsync(host, static_cast<const std::uint8_t*>(device_data) + offset, piece_bytes,
                                 cudaMemcpyDeviceToHost, m.stream),
                 "download weights");
      check_cuda(cudaEventRecord(m.done, m.stream), "record download event");
      cuda_model::wait_event(m.done, timeout, kWho, "download weights");
      visit(std::span<const std::uint8_t>(host, piece_bytes));
    }
  };
  const auto matrix = [&](const DeviceArray<bf16>& tensor) { download(tensor.get(), tensor.count() * sizeof(bf16)); };
  const auto vector = [&](const DeviceArray<float>& tensor) { download(tensor.get(), tensor.count() * sizeof(float)); };
  for (std::size_t l = 0; l < m.layers.size(); ++l) {
    const LayerState& layer = m.layers[l];
    for (const auto* tensor : {&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w1, &layer.w2}) matrix(*tensor);
    for (const auto* tensor : {&layer.gain_attn, &layer.gain_mlp, &layer.gain_q, &layer.gain_k}) vector(*tensor);
    if (l == 0) vector(m.t_embed);  // tensor_id 10 sorts after layer 0's gains
  }
}

int CudaModel::cached_frames() const { return impl_->ring_frames; }
bool CudaModel::graph_capture() const { return impl_->options.graph_capture; }
const ModelConfig& CudaModel::config() const { return impl_->config; }
void* CudaModel::stream() const { return impl_->stream; }

}  // namespace lockstep
