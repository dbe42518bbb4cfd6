// Float GEMM with either operand read transposed, for the products of predictor training (predictor/train.cpp),
// where both operands are activations or gradients rather than model weights. matmul (matmul.h) covers weights
// times tokens; this covers the other three layouts without materialising a transpose.
#pragma once
#include <cstdint>

#include "kernels-cpu/thread-pool.h"

namespace ember {

// One operand: a row-major float matrix whose stored rows start ld floats apart, used as stored or transposed.
struct GemmOperand {
    const float* data = nullptr;
    int64_t ld = 0;           // floats between the starts of consecutive stored rows
    bool transposed = false;  // the product reads data^T
};

struct GemmDims {
    int64_t m = 0;  // rows of C and of op(A)
    int64_t n = 0;  // columns of C and of op(B)
    int64_t k = 0;  // columns of op(A), rows of op(B)
};

// C (m, n) = op(A) (m, k) · op(B) (k, n); C row-major with leading dimension ldc, overwritten (k = 0 gives zeros).
// C is cut into tiles chosen from the shape alone and the tiles are spread over the pool; each tile is one
// single-threaded BLAS sgemm over all of k (a plain loop without BLAS), so the result is the same for any thread
// count. Throws std::invalid_argument on a negative size or a leading dimension shorter than its rows.
void gemm_f32(const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc, const GemmDims& d, ThreadPool& pool);

// Plain reference: the same product accumulated in double.
void gemm_f32_ref(const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc, const GemmDims& d);

// The tile grid gemm_f32 uses for a product of m x n: rows and columns per tile. Exposed for tests.
struct GemmTiles {
    int64_t rows = 0, cols = 0;
};
GemmTiles gemm_f32_tiles(int64_t m, int64_t n);

}  // namespace ember
