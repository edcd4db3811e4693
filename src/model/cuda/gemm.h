// Row-major matrix products on cuBLAS (column-major underneath) with bf16
// inputs and fp32 accumulation. Each call only enqueues on the handle's stream.
// Private.
#pragma once

#include <cublas_v2.h>

#include "model/cuda/kernels.h"

namespace lockstep::cuda_model {

// C[m × n] = A[m × k] · B[k × n], all row-major with leading dimensions
// lda, ldb, ldc; C is fp32 or bf16 (c_type).
void gemm_rm(cublasHandle_t handle, int m, int n, int k, const bf16* a, int lda, const bf16* b,
             int ldb, void* c, cudaDataType_t c_type, int ldc);

// Per head h < batch: S_h[rows × keys] = scale · Q_h[rows × hd] · K_hᵀ, where
// head h's columns start at h·hd in Q and K (row stride ld); S is fp32 with
// one rows × keys block per head.
void attention_scores(cublasHandle_t handle, int batch, int rows, int keys, int head_dim,
                      const bf16* q, const bf16* k, int ld, float scale, float* scores);

// Per head h < batch: O_h[rows × hd] = P_h[rows × keys] · V_h[keys × hd], with
// O_h and V_h at column h·hd (row stride ld).
void attention_values(cublasHandle_t handle, int batch, int rows, int keys, int head_dim,
                      const bf16* probs, const bf16* v, int ld, bf16* out);

}  // namespace lockstep::cuda_model
