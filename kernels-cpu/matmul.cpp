// matvec: rows split over the pool, each chunk streamed through dot_rows (several rows per pass).
// matmul: BLAS sgemm on row panels of dequantized weights when built with OpenBLAS or oneDNN and the batch is
// large enough to amortize the dequantization; otherwise per-token dot products, weight chunks reused from cache.
#include "kernels-cpu/matmul.h"

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/quant.h"

#if defined(EMBER_OPENBLAS)
#include <cblas.h>
#elif defined(EMBER_ONEDNN)
#include <dnnl.h>
#endif

namespace ember {

namespace {

constexpr int64_t kPanelRows = 512;       // weight rows dequantized per GEMM panel (the scratch size)
constexpr int64_t kMinBlasTokens = 8;     // fewer tokens: reading the weights once per token is cheaper
constexpr int64_t kTileTokens = 128;      // OpenBLAS: one single-threaded sgemm per (tokens x rows) tile
constexpr int64_t kMinTileRows = 64;
constexpr int64_t kMinChunkBytes = 16384; // matvec: below this, waking a thread costs more than it saves

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// matvec's grain: whole groups of dot_rows' 4 rows, and at least kMinChunkBytes of weights. The pool's guided
// chunks start at 1/(2 n_threads) of the rows and shrink to one grain at the end, which bounds the idle time.
int64_t matvec_grain(size_t row_bytes) {
    const int64_t min_rows = ((int64_t)kMinChunkBytes + (int64_t)row_bytes - 1) / (int64_t)row_bytes;
    return std::max<int64_t>(4, round_up(min_rows, 4));
}

// Per-token dot products: each chunk of rows (sized to stay in L2) is reused for every token of the group.
void matmul_dots(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_rows,
                 int64_t n_cols, float* scratch, ThreadPool& pool) {
    const DotKernels* k = dot_kernels();
    const size_t rb = dtype_row_bytes(wt, n_cols);
    const uint8_t* wb = (const uint8_t*)w;
    const bool quantized_x = dot_vec_type(wt) != DType::DTYPE_F32;
    const size_t xb = dot_vec_bytes(wt, n_cols);
    const int64_t group = quantized_x
        ? std::max<int64_t>(1, matmul_scratch_floats(n_rows, n_cols) * 4 / (int64_t)xb)
        : n_tokens;
    int64_t grain = std::max<int64_t>(4, round_up((256 << 10) / (int64_t)rb, 4));  // ~256 KiB of weights
    grain = std::min(grain, std::max<int64_t>(4, round_up(n_rows / (pool.size() * 4), 4)));
    for (int64_t t0 = 0; t0 < n_tokens; t0 += group) {
        const int64_t nt = std::min(group, n_tokens - t0);
        const uint8_t* xq = (const uint8_t*)(x + t0 * n_cols);
        if (quantized_x) {
            uint8_t* q = (uint8_t*)scratch;
            pool.parallel_for(nt, 1, [&](int64_t b, int64_t e) {
                for (int64_t t = b; t < e; t++) k->quantize_row_q8_0(x + (t0 + t) * n_cols, q + t * xb, n_cols);
            });
            xq = q;
        }
        const size_t x_stride = quantized_x ? xb : (size_t)n_cols * 4;
        pool.parallel_for(n_rows, grain, [&](int64_t b, int64_t e) {
            for (int64_t t = 0; t < nt; t++) {
                k->dot_rows(wt, wb + b * rb, rb, xq + t * x_stride, y + (t0 + t) * n_rows + b, e - b, n_cols);
            }
        });
    }
}

#if defined(EMBER_OPENBLAS) || defined(EMBER_ONEDNN)
// Y[:, p0:p0+pr] = X * panel^T, panel (pr, n_cols) row-major float.
void gemm_panel(const float* x, const float* panel, float* y, int64_t n_tokens, int64_t pr, int64_t p0,
                int64_t n_rows, int64_t n_cols, ThreadPool& pool) {
#if defined(EMBER_OPENBLAS)
    // Tiles run single-threaded in our pool (OpenBLAS is set to 1 thread): no second set of spinning threads.
    const int64_t tt = std::min(n_tokens, kTileTokens);
    const int64_t nt_tiles = (n_tokens + tt - 1) / tt;
    int64_t tr = round_up((pr * nt_tiles + 2 * pool.size() - 1) / (2 * pool.size()), 16);
    tr = std::min(pr, std::max(tr, kMinTileRows));
    const int64_t nr_tiles = (pr + tr - 1) / tr;
    pool.parallel_for(nt_tiles * nr_tiles, 1, [&](int64_t b, int64_t e) {
        for (int64_t tile = b; tile < e; tile++) {
            const int64_t t0 = tile / nr_tiles * tt, r0 = tile % nr_tiles * tr;
            const int64_t m = std::min(tt, n_tokens - t0), n = std::min(tr, pr - r0);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)n_cols, 1.0f, x + t0 * n_cols,
                        (int)n_cols, panel + r0 * n_cols, (int)n_cols, 0.0f, y + t0 * n_rows + p0 + r0, (int)n_rows);
        }
    });
#else
    (void)pool;
    // oneDNN threads its sgemm itself (OpenMP here).
    const dnnl_status_t st = dnnl_sgemm('N', 'T', n_tokens, pr, n_cols, 1.0f, x, n_cols, panel, n_cols, 0.0f,
                                        y + p0, n_rows);
    if (st != dnnl_success) {
        throw std::runtime_error("matmul: dnnl_sgemm(" + std::to_string(n_tokens) + " x " + std::to_string(pr) +
                                 " x " + std::to_string(n_cols) + ") failed with status " + std::to_string((int)st));
    }
#endif
}

void matmul_blas(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_rows,
                 int64_t n_cols, float* scratch, ThreadPool& pool) {
#if defined(EMBER_OPENBLAS)
    static std::once_flag once;
    std::call_once(once, [] { openblas_set_num_threads(1); });
#endif
    const DotKernels* k = dot_kernels();
    const size_t rb = dtype_row_bytes(wt, n_cols);
    const uint8_t* wb = (const uint8_t*)w;
    const int64_t panel_rows = std::min(n_rows, kPanelRows);
    for (int64_t p0 = 0; p0 < n_rows; p0 += panel_rows) {
        const int64_t pr = std::min(panel_rows, n_rows - p0);
        const float* panel = (const float*)(wb + p0 * rb);
        if (wt != DType::DTYPE_F32) {
            pool.parallel_for(pr, 8, [&](int64_t b, int64_t e) {
                for (int64_t r = b; r < e; r++) k->dequantize_row(wt, wb + (p0 + r) * rb, scratch + r * n_cols, n_cols);
            });
            panel = scratch;
        }
        gemm_panel(x, panel, y, n_tokens, pr, p0, n_rows, n_cols, pool);
    }
}
#endif

}  // namespace

void matvec(DType wt, const void* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, ThreadPool& pool) {
    const DotKernels* k = dot_kernels();
    const size_t rb = dtype_row_bytes(wt, n_cols);
    const uint8_t* wb = (const uint8_t*)w;
    pool.parallel_for(n_rows, matvec_grain(rb), [&](int64_t b, int64_t e) {
        k->dot_rows(wt, wb + b * rb, rb, xq, y + b, e - b, n_cols);
    });
}

int64_t matmul_scratch_floats(int64_t n_rows, int64_t n_cols) { return std::min(n_rows, kPanelRows) * n_cols; }

const char* matmul_backend(int64_t n_tokens) {
#if defined(EMBER_OPENBLAS)
    if (n_tokens >= kMinBlasTokens) return "openblas";
#elif defined(EMBER_ONEDNN)
    if (n_tokens >= kMinBlasTokens) return "onednn";
#else
    (void)n_tokens;
#endif
    return "dot";
}

void matmul(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_rows, int64_t n_cols,
            float* scratch, ThreadPool& pool) {
    if (n_tokens <= 0 || n_rows <= 0) return;
#if defined(EMBER_OPENBLAS) || defined(EMBER_ONEDNN)
    if (n_tokens >= kMinBlasTokens) {
        matmul_blas(wt, w, x, y, n_tokens, n_rows, n_cols, scratch, pool);
        return;
    }
#endif
    matmul_dots(wt, w, x, y, n_tokens, n_rows, n_cols, scratch, pool);
}

void matmul_ref(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_rows, int64_t n_cols) {
    const size_t rb = dtype_row_bytes(wt, n_cols);
    std::vector<float> row((size_t)n_cols);
    for (int64_t r = 0; r < n_rows; r++) {
        dot_kernels_portable()->dequantize_row(wt, (const uint8_t*)w + r * rb, row.data(), n_cols);
        for (int64_t t = 0; t < n_tokens; t++) {
            const float* xt = x + t * n_cols;
            double s = 0.0;
            for (int64_t c = 0; c < n_cols; c++) s += (double)row[c] * (double)xt[c];
            y[t * n_rows + r] = (float)s;
        }
    }
}

}  // namespace ember
