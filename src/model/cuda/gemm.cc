#include "model/cuda/gemm.h"

#include "backends/nccl/cuda_check.h"

namespace lockstep::cuda_model {

// Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ, and a row-major matrix read as
// column-major is its transpose: so every call swaps the operands.

void gemm_rm(cublasHandle_t handle, int m, int n, int k, const bf16* a, int lda, const bf16* b,
             int ldb, void* c, cudaDataType_t c_type, int ldc) {
  const float one = 1.0f;
  const float zero = 0.0f;
  cuda_detail::check_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b,
                                         CUDA_R_16BF, ldb, a, CUDA_R_16BF, lda, &zero, c, c_type,
                                         ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                            "cublasGemmEx");
}

void attention_scores(cublasHandle_t handle, int batch, int rows, int keys, int head_dim,
                      const bf16* q, const bf16* k, int ld, float scale, float* scores) {
  const float zero = 0.0f;
  const long long score_block = static_cast<long long>(rows) * keys;
  cuda_detail::check_cublas(
      cublasGemmStridedBatchedEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, keys, rows, head_dim, &scale, k,
                                 CUDA_R_16BF, ld, head_dim, q, CUDA_R_16BF, ld, head_dim, &zero,
                                 scores, CUDA_R_32F, keys, score_block, batch, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT),
      "cublasGemmStridedBatchedEx (scores)");
}

void attention_values(cublasHandle_t handle, int batch, int rows, int keys, int head_dim,
                      const bf16* probs, const bf16* v, int ld, bf16* out) {
  const float one = 1.0f;
  const float zero = 0.0f;
  const long long prob_block = static_cast<long long>(rows) * keys;
  cuda_detail::check_cublas(
      cublasGemmStridedBatchedEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, head_dim, rows, keys, &one, v,
                                 CUDA_R_16BF, ld, head_dim, probs, CUDA_R_16BF, keys, prob_block,
                                 &zero, out, CUDA_R_16BF, ld, head_dim, batch, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT),
      "cublasGemmStridedBatchedEx (values)");
}

}  // namespace lockstep::cuda_model
