// An independent, deliberately naive transcription of docs/reference-model.md
// (double precision, plain loops, full unsharded weights, a cache that is a
// list of frames) — the ReferenceModel at TP = 1 must match it. It pins the
// model to the page rather than to itself, which is what the CUDA
// implementation is compared against too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <deque>
#include <vector>

#include "lockstep/reference_model.h"

namespace lockstep {
namespace {

using Matrix = std::vector<std::vector<double>>;  // rows × cols

class NoopOps final : public TensorParallelOps {
 public:
  void all_reduce_sum(float*, std::size_t) override {}
};

Matrix weights(const ModelConfig& c, int layer, WeightTensor tensor, int rows, int cols) {
  Matrix m(static_cast<std::size_t>(rows), std::vector<double>(static_cast<std::size_t>(cols)));
  for (int r = 0; r < rows; ++r) {
    for (int col = 0; col < cols; ++col) m[r][col] = reference_weight(c, kReferenceSeedDefault, layer, tensor, r, col);
  }
  return m;
}

Matrix matmul(const Matrix& a, const Matrix& b) {
  Matrix out(a.size(), std::vector<double>(b[0].size()));
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (std::size_t k = 0; k < b.size(); ++k) {
      for (std::size_t j = 0; j < b[0].size(); ++j) out[i][j] += a[i][k] * b[k][j];
    }
  }
  return out;
}

Matrix rmsnorm_gain(const Matrix& x, const std::vector<double>& gain) {
  Matrix out = x;
  for (auto& row : out) {
    double squares = 0;
    for (double v : row) squares += v * v;
    const double denominator = std::sqrt(squares / static_cast<double>(row.size()) + 1e-6);
    for (std::size_t d = 0; d < row.size(); ++d) row[d] = row[d] / denominator * gain[d];
  }
  return out;
}

struct Frame {  // per layer: tokens_per_frame rows of k and v
  std::vector<Matrix> k, v;
};

class NaiveModel {
 public:
  explicit NaiveModel(const ModelConfig& c) : c_(c) {
    const int d = c.dim;
    for (int l = 0; l < c.layers; ++l) {
      Layer layer{weights(c, l, WeightTensor::kWq, d, d),          weights(c, l, WeightTensor::kWk, d, d),
                  weights(c, l, WeightTensor::kWv, d, d),          weights(c, l, WeightTensor::kWo, d, d),
                  weights(c, l, WeightTensor::kW1, d, 4 * d),      weights(c, l, WeightTensor::kW2, 4 * d, d),
                  weights(c, l, WeightTensor::kGainAttn, 1, d)[0], weights(c, l, WeightTensor::kGainMlp, 1, d)[0],
                  weights(c, l, WeightTensor::kGainQ, 1, d)[0],    weights(c, l, WeightTensor::kGainK, 1, d)[0]};
      layers_.push_back(layer);
    }
    t_embed_ = weights(c, 0, WeightTensor::kTimeEmbed, 1, d)[0];
  }

  // One generator call; returns the per-layer k, v of its tokens.
  std::vector<std::pair<Matrix, Matrix>> call(Matrix& x, double t, bool use_cache) {
    for (auto& row : x) {
      for (std::size_t d = 0; d < row.size(); ++d) row[d] += t * t_embed_[d];
    }
    std::vector<std::pair<Matrix, Matrix>> kv;
    for (int l = 0; l < c_.layers; ++l) {
      const Layer& w = layers_[static_cast<std::size_t>(l)];
      const Matrix h = rmsnorm_gain(x, w.g_attn);
      const Matrix q = rmsnorm_gain(matmul(h, w.wq), w.g_q);  // QK-norm over the full D
      const Matrix k = rmsnorm_gain(matmul(h, w.wk), w.g_k);
      const Matrix v = matmul(h, w.wv);
      kv.emplace_back(k, v);
      Matrix keys, values;
      std::size_t cached = 0;
      if (use_cache) {
        for (const Frame& frame : cache_) {
          keys.insert(keys.end(), frame.k[l].begin(), frame.k[l].end());
          values.insert(values.end(), frame.v[l].begin(), frame.v[l].end());
        }
        cached = keys.size();
      }
      keys.insert(keys.end(), k.begin(), k.end());
      values.insert(values.end(), v.begin(), v.end());
      Matrix o(x.size(), std::vector<double>(static_cast<std::size_t>(c_.dim)));
      const int hd = c_.head_dim();
      for (int head = 0; head < c_.heads; ++head) {
        for (std::size_t n = 0; n < x.size(); ++n) {
          std::vector<double> scores(keys.size());
          double peak = -1e300, total = 0;
          for (std::size_t j = 0; j < keys.size(); ++j) {
            for (int e = head * hd; e < (head + 1) * hd; ++e) scores[j] += q[n][e] * keys[j][e];
            scores[j] = scores[j] / std::sqrt(static_cast<double>(hd)) + (j < cached ? bias_ : 0.0);
            peak = std::max(peak, scores[j]);
          }
          for (double& s : scores) total += (s = std::exp(s - peak));
          for (std::size_t j = 0; j < keys.size(); ++j) {
            for (int e = head * hd; e < (head + 1) * hd; ++e) o[n][e] += scores[j] / total * values[j][e];
          }
        }
      }
      add(x, matmul(o, w.wo));
      Matrix hidden = matmul(rmsnorm_gain(x, w.g_mlp), w.w1);
      for (auto& row : hidden) {
        for (double& a : row) a = 0.5 * a * (1 + std::tanh(std::sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
      }
      add(x, matmul(hidden, w.w2));
    }
    return kv;
  }

  void append(const std::vector<std::pair<Matrix, Matrix>>& kv, bool replace) {
    if (replace) cache_.clear();
    const std::size_t tpf = static_cast<std::size_t>(c_.tokens_per_frame);
    for (std::size_t f = 0; f < kv[0].first.size() / tpf; ++f) {
      Frame frame;
      for (const auto& [k, v] : kv) {
        frame.k.emplace_back(k.begin() + static_cast<std::ptrdiff_t>(f * tpf), k.begin() + static_cast<std::ptrdiff_t>((f + 1) * tpf));
        frame.v.emplace_back(v.begin() + static_cast<std::ptrdiff_t>(f * tpf), v.begin() + static_cast<std::ptrdiff_t>((f + 1) * tpf));
      }
      cache_.push_back(frame);
      if (cache_.size() > static_cast<std::size_t>(c_.window_frames)) cache_.pop_front();
    }
  }
  void set_bias(double bias) { bias_ = bias; }

 private:
  struct Layer {
    Matrix wq, wk, wv, wo, w1, w2;
    std::vector<double> g_attn, g_mlp, g_q, g_k;
  };
  static void add(Matrix& x, const Matrix& delta) {
    for (std::size_t i = 0; i < x.size(); ++i) {
      for (std::size_t j = 0; j < x[i].size(); ++j) x[i][j] += delta[i][j];
    }
  }
  ModelConfig c_;
  std::vector<Layer> layers_;
  std::vector<double> t_embed_;
  std::deque<Frame> cache_;
  double bias_ = 0;
};

Matrix to_matrix(const std::vector<float>& flat, int cols) {
  Matrix m(flat.size() / static_cast<std::size_t>(cols));
  for (std::size_t i = 0; i < flat.size(); ++i) m[i / static_cast<std::size_t>(cols)].push_back(flat[i]);
  return m;
}

std::vector<float> input(std::size_t count, std::uint64_t stream) {
  std::vector<float> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    out[i] = static_cast<float>(static_cast<double>(splitmix64(stream << 32 | i) >> 11) / 9007199254740992.0 * 2 - 1);
  }
  return out;
}

TEST(ReferenceModelGolden, MatchesANaiveTranscriptionOfTheDoc) {
  const ModelConfig c = model_config_from_name("tiny");
  NoopOps ops;
  ReferenceModel model(c, 0, 1, kReferenceSeedDefault, ops);
  NaiveModel naive(c);
  model.cache().init(0, 0, 0.0f);
  const std::vector<double> timesteps = {0.8, 0.4};
  double worst = 0;
  for (int chunk = 0; chunk < 5; ++chunk) {  // 10 frames > window 6: evictions
    if (chunk == 1) {
      model.cache().set_attention_bias(-1.5f);
      naive.set_bias(-1.5);
    }
    if (chunk == 3) {  // recompute over 4 frames of context
      const std::vector<float> context = input(static_cast<std::size_t>(4 * c.tokens_per_frame * c.dim), 99);
      model.recompute(context);
      Matrix context_x = to_matrix(context, c.dim);
      naive.append(naive.call(context_x, 0.0, false), true);
    }
    std::vector<float> x = input(static_cast<std::size_t>(c.tokens_per_chunk() * c.dim), static_cast<std::uint64_t>(chunk));
    Matrix expected = to_matrix(x, c.dim);
    std::vector<std::pair<Matrix, Matrix>> kv;
    for (double t : timesteps) {
      model.denoise(x, static_cast<float>(t));
      kv = naive.call(expected, t, true);
    }
    model.commit_chunk();
    naive.append(kv, false);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double reference = expected[i / static_cast<std::size_t>(c.dim)][i % static_cast<std::size_t>(c.dim)];
      worst = std::max(worst, std::fabs(x[i] - reference) / std::max(1.0, std::fabs(reference)));
    }
  }
  std::printf("fp32 model vs fp64 transcription: worst relative error %.3g\n", worst);
  EXPECT_LE(worst, 1e-4);
}

}  // namespace
}  // namespace lockstep
