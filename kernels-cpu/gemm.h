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
// The product is cut into blocks chosen from the shape alone (tiles of C, and chunks of k where the tiles are too
// few for a pool) and the blocks are spread over the pool; each block is one single-threaded BLAS sgemm (a plain
// loop without BLAS) and the chunks of k are summed in order, so the result is the same for any thread count.
// Chunked products keep (chunks - 1) * m * n floats of the calling thread's scratch (grown once, kept).
// Throws std::invalid_argument on a negative size, a leading dimension shorter than its rows, or a null matrix.
void gemm_f32(const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc, const GemmDims& d, ThreadPool& pool);

// The same product on the calling thread alone, as one single-threaded BLAS sgemm (a plain loop without BLAS): for
// callers that spread their own blocks over a pool (matmul's blocks of weight rows). Throws as gemm_f32.
void gemm_f32_serial(const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc, const GemmDims& d);

// Plain reference: the same product accumulated in double.
void gemm_f32_ref(const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc, const GemmDims& d);

// The blocks gemm_f32 uses for a product of m x n over k: rows and columns per tile of C, and k per chunk (k itself
// when k is not cut). Exposed for tests.
struct GemmTiles {
    int64_t rows = 0, cols = 0, depth = 0;
};
GemmTiles gemm_f32_tiles(int64_t m, int64_t n, int64_t k);

}  // namespace ember
