// Matrix-vector and matrix-matrix products on the GPU; mirrors kernels-cpu/matmul.h. Weights are stored as ggml
// stores them: w is (n_rows, n_cols) row-major, row r holds output r's weights. Pointers are device memory.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels-cpu/dtype.h"

namespace ember::gpu {

// y[r] = dot(w row r, x) for r in [0, n_rows). xq: x prepared by gpu::dot_prepare_vec(wt, ...).
// Bandwidth-bound GEMV: one warp per row (a block of 4 warps per row when there are few rows), 16-byte loads where
// rows allow (n_cols % 8 == 0 and 16-byte aligned; Q8_0/Q4_0 rows always take units of 8). No scratch.
void matvec(DType wt, const void* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, cudaStream_t stream);

// Device scratch and the cuBLAS handle for matmul, owned by the caller (a session's state).
struct GemmWorkspace {
    cublasHandle_t handle = nullptr;  // set to the call's stream by matmul when it is on another one (a handle kept
                                      // on one stream keeps the workspace given to it with cublasSetWorkspace)
    void* ptr = nullptr;              // device scratch, 256-byte aligned (cudaMalloc)
    size_t bytes = 0;                 // at least matmul_workspace_bytes(wt, n_tokens, n_cols, 1)
};

// Scratch for matmul of n_tokens rows of n_cols with slab_rows weight rows dequantized at once: the activations
// converted to F16/BF16 (F16, BF16, Q8_0, Q4_0) plus slab_rows * n_cols F16 values (Q8_0, Q4_0). F32 needs none.
// A bigger workspace makes fewer, larger GEMMs; n_rows rows make one.
size_t matmul_workspace_bytes(DType wt, int64_t n_tokens, int64_t n_cols, int64_t slab_rows);

// Y (n_tokens, n_rows) = X (n_tokens, n_cols) * W^T, X and Y row-major float, through cuBLAS with float accumulation:
// F32 by SGEMM (no TF32); F16/BF16 by cublasGemmEx with X rounded to the weight type; Q8_0/Q4_0 dequantized to F16
// into the workspace in slabs of rows (as many as fit), X rounded to F16. Throws ember::Error when the workspace
// cannot hold the activations and one weight row.
void matmul(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_rows, int64_t n_cols,
            const GemmWorkspace& ws, cudaStream_t stream);

}  // namespace ember::gpu
