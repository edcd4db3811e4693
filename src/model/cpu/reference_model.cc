#include "lockstep/reference_model.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "lockstep/error.h"
#include "weights.h"

namespace lockstep {
namespace {

constexpr float kNormEpsilon = 1e-6f;
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

// C[m × n] = A[m × k] · B[k × n], all row-major and contiguous.
void matmul(const float* a, const float* b, float* c, int m, int n, int k) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
}

// out = rmsnorm(x) ⊙ gain per token; x, out are [tokens × dim].
void rmsnorm(const float* x, const std::vector<float>& gain, float* out, int tokens, int dim) {
  for (int n = 0; n < tokens; ++n) {
    const float* row = x + static_cast<std::ptrdiff_t>(n) * dim;
    float squares = 0;
    for (int d = 0; d < dim; ++d) squares += row[d] * row[d];
    const float inverse = 1.0f / std::sqrt(squares / static_cast<float>(dim) + kNormEpsilon);
    float* target = out + static_cast<std::ptrdiff_t>(n) * dim;
    for (int d = 0; d < dim; ++d) target[d] = row[d] * inverse * gain[static_cast<std::size_t>(d)];
  }
}

// Per token: sum of squares of a [tokens × width] matrix into sums[0, tokens).
void row_squares(const float* m, int tokens, int width, float* sums) {
  for (int n = 0; n < tokens; ++n) {
    float total = 0;
    for (int j = 0; j < width; ++j) total += m[n * width + j] * m[n * width + j];
    sums[n] = total;
  }
}

// QK-norm over the full D from the all-reduced sums of squares.
void qk_normalise(float* m, const float* sums, const std::vector<float>& gain, int tokens, int width, int dim) {
  for (int n = 0; n < tokens; ++n) {
    const float denominator = std::sqrt(sums[n] / static_cast<float>(dim) + kNormEpsilon);
    for (int j = 0; j < width; ++j) m[n * width + j] = m[n * width + j] / denominator * gain[static_cast<std::size_t>(j)];
  }
}

// Numerically stable softmax of one row, in place.
void softmax(float* row, int count) {
  const float peak = *std::max_element(row, row + count);
  float total = 0;
  for (int j = 0; j < count; ++j) {
    row[j] = std::exp(row[j] - peak);
    total += row[j];
  }
  for (int j = 0; j < count; ++j) row[j] /= total;
}

float gelu_tanh(float x) { return 0.5f * x * (1.0f + std::tanh(kGeluScale * (x + kGeluCubic * x * x * x))); }

void add_into(std::span<float> x, const std::vector<float>& delta) {
  for (std::size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
}

KvFrames make_frames(const ModelConfig& config, int frames, int local_dim) {
  const auto floats = static_cast<std::size_t>(frames) * static_cast<std::size_t>(config.tokens_per_frame) *
                      static_cast<std::size_t>(local_dim);
  KvFrames out;
  out.frames = frames;
  out.k.assign(static_cast<std::size_t>(config.layers), std::vector<float>(floats));
  out.v.assign(static_cast<std::size_t>(config.layers), std::vector<float>(floats));
  return out;
}

KvGeometry cache_geometry(const ModelConfig& config, int tp_rank, int tp_size) {
  check_tensor_parallel(config, tp_rank, tp_size);
  return KvGeometry{config.layers, config.heads / tp_size, config.head_dim(), config.tokens_per_frame,
                    config.window_frames};
}

}  // namespace

ReferenceModel::ReferenceModel(const ModelConfig& config, int tp_rank, int tp_size, std::uint64_t seed,
                               TensorParallelOps& ops)
    : config_(config),
      tp_rank_(tp_rank),
      tp_size_(tp_size),
      ops_(ops),
      shard_(std::make_unique<const detail::ModelShard>(detail::generate_shard(config, seed, tp_rank, tp_size))),
      cache_(cache_geometry(config, tp_rank, tp_size)),
      pending_(make_frames(config, config.frames_per_chunk, config.dim / tp_size)) {}

ReferenceModel::~ReferenceModel() = default;

std::uint64_t ReferenceModel::weight_fingerprint() const noexcept {
  return detail::fingerprint_shard(*shard_, WeightStorage::kF32);
}

void ReferenceModel::check_tokens(std::size_t floats, int tokens_per_unit, int units_max, const char* what) const {
  const auto unit_floats = static_cast<std::size_t>(tokens_per_unit) * static_cast<std::size_t>(config_.dim);
  const bool ok = floats > 0 && floats % unit_floats == 0 && floats / unit_floats <= static_cast<std::size_t>(units_max);
  if (!ok) {
    throw Error(ErrorCode::kSchema, "model '" + config_.name + "': " + what + " has " + std::to_string(floats) +
                                        " floats; expected a multiple of " + std::to_string(unit_floats) +
                                        " up to " + std::to_string(units_max) + " of them");
  }
}

void ReferenceModel::denoise(std::span<float> x, float timestep) {
  cache_.require(KvEvent::kAppend);
  const int tokens = config_.tokens_per_chunk();
  check_tokens(x.size(), tokens, 1, "denoise latents");
  has_pending_ = false;
  forward(x, tokens, timestep, true, pending_);
  has_pending_ = true;
  ++generator_calls_;
}

void ReferenceModel::recompute(std::span<const float> context) {
  cache_.require(KvEvent::kRecompute);
  check_tokens(context.size(), config_.tokens_per_frame, config_.window_frames, "recompute context_override");
  const auto frames = static_cast<int>(context.size() / (static_cast<std::size_t>(config_.tokens_per_frame) *
                                                         static_cast<std::size_t>(config_.dim)));
  std::vector<float> x(context.begin(), context.end());
  KvFrames context_kv = make_frames(config_, frames, cache_.geometry().local_dim());
  has_pending_ = false;
  forward(x, frames * config_.tokens_per_frame, 0.0f, false, context_kv);
  cache_.replace_all(context_kv);
  ++generator_calls_;
}

void ReferenceModel::commit_chunk() {
  if (!has_pending_) {
    throw Error(ErrorCode::kPlan, "model '" + config_.name + "': commit_chunk without a denoise call since the last "
                                                             "commit or recompute");
  }
  cache_.append(pending_);
  has_pending_ = false;
}

void ReferenceModel::forward(std::span<float> x, int tokens, float timestep, bool use_cache, KvFrames& kv_out) {
  const int dim = config_.dim;
  for (int n = 0; n < tokens; ++n) {
    for (int d = 0; d < dim; ++d) x[static_cast<std::size_t>(n * dim + d)] += timestep * shard_->t_embed[static_cast<std::size_t>(d)];
  }
  for (int layer = 0; layer < config_.layers; ++layer) {
    attention(layer, x, tokens, use_cache, kv_out);
    mlp(layer, x, tokens);
  }
}

void ReferenceModel::attention(int layer, std::span<float> x, int tokens, bool use_cache, KvFrames& kv_out) {
  const detail::LayerShard& w = shard_->layers[static_cast<std::size_t>(layer)];
  const int dim = config_.dim;
  const int local_dim = cache_.geometry().local_dim();
  const auto n_dim = static_cast<std::size_t>(tokens) * static_cast<std::size_t>(dim);
  h_.resize(n_dim);
  q_.resize(static_cast<std::size_t>(tokens) * static_cast<std::size_t>(local_dim));
  std::vector<float>& k = kv_out.k[static_cast<std::size_t>(layer)];
  std::vector<float>& v = kv_out.v[static_cast<std::size_t>(layer)];
  rmsnorm(x.data(), w.g_attn, h_.data(), tokens, dim);
  matmul(h_.data(), w.wq.data(), q_.data(), tokens, local_dim, dim);
  matmul(h_.data(), w.wk.data(), k.data(), tokens, local_dim, dim);
  matmul(h_.data(), w.wv.data(), v.data(), tokens, local_dim, dim);
  norm_sums_.resize(2 * static_cast<std::size_t>(tokens));
  row_squares(q_.data(), tokens, local_dim, norm_sums_.data());
  row_squares(k.data(), tokens, local_dim, norm_sums_.data() + tokens);
  ops_.all_reduce_sum(norm_sums_.data(), norm_sums_.size());
  qk_normalise(q_.data(), norm_sums_.data(), w.g_q, tokens, local_dim, dim);
  qk_normalise(k.data(), norm_sums_.data() + tokens, w.g_k, tokens, local_dim, dim);
  attend_heads(layer, tokens, use_cache, k, v);
  projected_.resize(n_dim);
  matmul(heads_out_.data(), w.wo.data(), projected_.data(), tokens, dim, local_dim);
  ops_.all_reduce_sum(projected_.data(), projected_.size());
  add_into(x, projected_);
}

// heads_out_ = per local head softmax(q·Kᵀ/sqrt(head_dim) + bias)·V over
// [cache frames oldest first ; this call's tokens].
void ReferenceModel::attend_heads(int layer, int tokens, bool use_cache, std::span<const float> k,
                                  std::span<const float> v) {
  const KvGeometry& geometry = cache_.geometry();
  const int local_dim = geometry.local_dim();
  const int head_dim = geometry.head_dim;
  const int cached_frames = use_cache ? cache_.frames_held() : 0;
  const int cached = cached_frames * geometry.tokens_per_frame;
  const int total = cached + tokens;
  keys_.clear();
  values_.clear();
  for (int frame = 0; frame < cached_frames; ++frame) {
    const auto frame_keys = cache_.keys(layer, frame);
    const auto frame_values = cache_.values(layer, frame);
    keys_.insert(keys_.end(), frame_keys.begin(), frame_keys.end());
    values_.insert(values_.end(), frame_values.begin(), frame_values.end());
  }
  keys_.insert(keys_.end(), k.begin(), k.end());
  values_.insert(values_.end(), v.begin(), v.end());
  scores_.resize(static_cast<std::size_t>(tokens) * static_cast<std::size_t>(total));
  heads_out_.resize(static_cast<std::size_t>(tokens) * static_cast<std::size_t>(local_dim));
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const float bias = cache_.attention_bias();
  for (int head = 0; head < geometry.local_heads; ++head) {
    const int column = head * head_dim;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens, total, head_dim, scale, q_.data() + column,
                local_dim, keys_.data() + column, local_dim, 0.0f, scores_.data(), total);
    for (int n = 0; n < tokens; ++n) {
      float* row = scores_.data() + static_cast<std::ptrdiff_t>(n) * total;
      for (int j = 0; j < cached; ++j) row[j] += bias;
      softmax(row, total);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tokens, head_dim, total, 1.0f, scores_.data(), total,
                values_.data() + column, local_dim, 0.0f, heads_out_.data() + column, local_dim);
  }
}

void ReferenceModel::mlp(int layer, std::span<float> x, int tokens) {
  const detail::LayerShard& w = shard_->layers[static_cast<std::size_t>(layer)];
  const int dim = config_.dim;
  const int local_hidden = config_.mlp_hidden() / tp_size_;
  h_.resize(static_cast<std::size_t>(tokens) * static_cast<std::size_t>(dim));
  hidden_.resize(static_cast<std::size_t>(tokens) * static_cast<std::size_t>(local_hidden));
  projected_.resize(h_.size());
  rmsnorm(x.data(), w.g_mlp, h_.data(), tokens, dim);
  matmul(h_.data(), w.w1.data(), hidden_.data(), tokens, local_hidden, dim);
  for (float& value : hidden_) value = gelu_tanh(value);
  matmul(hidden_.data(), w.w2.data(), projected_.data(), tokens, dim, local_hidden);
  ops_.all_reduce_sum(projected_.data(), projected_.size());
  add_into(x, projected_);
}

}  // namespace lockstep
