// Matrix-vector and matrix-matrix products against weights stored row-major as ggml does:
// w is (n_rows, n_cols), row r holds output r's weights, n_cols contiguous elements of type wt.
#pragma once
#include <cstdint>

#include "kernels-cpu/dtype.h"
#include "kernels-cpu/thread-pool.h"

namespace ember {

// y[r] = dot(w row r, x) for r in [0, n_rows). xq: x prepared by dot_prepare_vec(wt, ...).
// Rows are split across the pool.
void matvec(DType wt, const void* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, ThreadPool& pool);

// One output of matvecs: y[r] = dot(w row r, x) for r in [0, n_rows).
struct MatvecOut {
    const void* w = nullptr;
    float* y = nullptr;
    int64_t n_rows = 0;
};
// Several products of one vector (the q, k and v projections; gate and up) in one pass over the pool: the outputs'
// rows are split across the workers as one list, so the pool starts and drains once, not once per matrix. Every
// matrix has type wt and n_cols columns; each y equals matvec's bit for bit.
void matvecs(DType wt, const MatvecOut* outs, int n_outs, const void* xq, int64_t n_cols, ThreadPool& pool);

// Y (n_tokens, n_rows) = X (n_tokens, n_cols) * W^T. X and Y are row-major float.
// Uses BLAS sgemm where built with it: blocks of weight rows, each dequantized by one worker into its own
// (thread_local) scratch and multiplied by a single-threaded sgemm; the result is the same for any thread count.
// Without BLAS, or for a few tokens, dot_rows per token with activations converted as for matvec, which needs
// `scratch` of matmul_scratch_floats(n_rows, n_cols) floats.
void matmul(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_rows, int64_t n_cols,
            float* scratch, ThreadPool& pool);
int64_t matmul_scratch_floats(int64_t n_rows, int64_t n_cols);
// Which path matmul takes for a batch of n_tokens: "openblas" or "onednn" (sgemm on dequantized weights, float
// activations) or "dot" (dot_rows per token: activations converted to dot_vec_type, as in matvec).
const char* matmul_backend(int64_t n_tokens);
// The smallest batch that takes the BLAS path (smaller ones take "dot", the same dot products as matvec, which is
// faster there and gives each token the logits it gets alone); 0 without BLAS.
int64_t matmul_blas_min_tokens();

// OpenBLAS picks its kernels by CPU model at load; on CPUs it does not know (a new Xeon behind a VM's generic model
// name, say) it falls back to SSE3 "Prescott" kernels, several times slower. matmul_blas_core() names the set it
// chose ("" without OpenBLAS); matmul_blas_coretype_advice() gives the OPENBLAS_CORETYPE value that fits this CPU
// when the chosen set is such a fallback and the CPU has AVX-512 ("SkylakeX") or AVX2 ("Haswell"), else "".
const char* matmul_blas_core();
const char* matmul_blas_coretype_advice();
// The rule behind it, for tests: core is OpenBLAS's name, the flags what the CPU supports.
const char* blas_coretype_advice(const char* core, bool avx512, bool avx2);

// Plain reference: y[t][r] = sum_c dequant(w)[r][c] * x[t][c], in double.
void matmul_ref(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_rows, int64_t n_cols);

}  // namespace ember
