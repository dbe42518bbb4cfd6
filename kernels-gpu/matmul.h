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

// Whether matvec_from_floats takes x as floats for these rows: Q8_0/Q4_0 rows of at most 16 blocks from a 2-byte
// aligned w (a predictor's fc2, whose rows are its rank), where every block of the kernel can quantize x itself.
bool matvec_quantizes_floats(DType wt, const void* w, int64_t n_cols);
// matvec(wt, w, xq, ...) with xq = dot_prepare_vec(wt, x) (relu: dot_prepare_relu_vec), the preparation made inside
// the matvec's launch rather than in a launch of its own: the same bits. Only where matvec_quantizes_floats holds;
// throws ember::Error naming the function otherwise.
void matvec_from_floats(DType wt, const void* w, const float* x, bool relu, float* y, int64_t n_rows, int64_t n_cols,
                        cudaStream_t stream);

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
// Y (n_tokens, n_out) = X (n_tokens, n_in) * W for W (n_in, n_out) row-major: row i of W is input i's contribution
// to every output (a transposed weight, such as the sparse FFN's down rows). Same types, rounding and workspace as
// matmul, with n_in in place of n_cols for the activations and n_out for the slab rows' length: the workspace must
// hold matmul_workspace_bytes(wt, n_tokens, n_in, 0) plus one row of n_out F16 values. Q8_0/Q4_0 rows go in slabs
// of inputs, each slab's product added to Y. n_out must be a multiple of the type's block size.
void matmul_by_rows(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_in, int64_t n_out,
                    const GemmWorkspace& ws, cudaStream_t stream);

}  // namespace ember::gpu
