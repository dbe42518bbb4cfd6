// matvec: rows split over the pool, each chunk streamed through dot_rows (several rows per pass).
// matmul with BLAS (OpenBLAS or oneDNN) and a batch large enough to amortize the dequantization: one parallel loop
// over blocks of weight rows; each worker dequantizes its block into its own scratch and at once runs one
// single-threaded sgemm (gemm_f32_serial) of the tokens against it, writing the block's columns of Y. One
// synchronisation per call, the weights read once, and blocks fixed by the shapes alone, so the result is the same
// for any thread count.
// Without BLAS or for small batches: per-token dot products, weight chunks reused from cache.
#include "kernels-cpu/matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/gemm.h"
#include "kernels-cpu/quant.h"

#if defined(EMBER_OPENBLAS)
#include <cblas.h>
#endif

namespace ember {

namespace {

// Fewer tokens take the dot path. Measured with ember-bench pp8/pp16/pp31 on 7B F16 (16 Xeon cores) and on a 0.5B F16
// and the tiny Q8_0 model (2 cores): below 32 tokens the dot path was 1.0-1.9x faster than dequantize + sgemm.
constexpr int64_t kMinBlasTokens = 32;
// Each sgemm call packs its activations (tokens x n_cols) and its weight rows (rows x n_cols) before it multiplies,
// so packing costs about 1/rows + 1/tokens of the work. Single-threaded, F16 11008x4096 and 4096x11008, 512 tokens,
// Zen 5, OpenBLAS SkylakeX kernels: 256-row blocks 196 GFLOP/s, 512 rows 192-201, 128 rows 176 (Haswell kernels:
// 108, 110, 101; 32-48 rows 60-75); 256-token tiles cost 3%. A block's F32 copy (4-11 MiB) then outgrows L2,
// which measured cheaper than blocks small enough to stay there.
constexpr int64_t kBlockRows = 256;      // weight rows per block (about: the blocks of a matrix are made equal)
constexpr int64_t kMaxTileTokens = 512;  // tokens per sgemm call; larger batches are split into equal tiles
// Matrices of few blocks (4096 rows: 16) also split their tokens, down to kMinTileTokens, towards kMinItems work
// items: 16 items on 12 threads keep the cores 67% busy, 32 items keep 8-16 threads 71-100% busy (12: 89%) for
// the cost of 256-token tiles (3%, above). Both depend on the shapes alone, not on the thread count.
constexpr int64_t kMinItems = 32;
constexpr int64_t kMinTileTokens = 128;
constexpr int64_t kDotGroupTokens = 64;  // dot path: tokens whose Q8_0 activations share one pass over weights
constexpr int64_t kMinChunkBytes = 16384;  // matvec: below this, waking a thread costs more than it saves

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

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
    const int64_t group = quantized_x ? kDotGroupTokens : n_tokens;  // scratch holds kDotGroupTokens rows
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
// Weight rows per block: about kBlockRows, the blocks of one matrix of equal size up to a multiple of 16 (the
// sgemm kernels' register tiles).
int64_t gemm_block_rows(int64_t n_rows) {
    const int64_t n_blocks = ceil_div(n_rows, kBlockRows);
    return std::min(n_rows, round_up(ceil_div(n_rows, n_blocks), 16));
}

void matmul_blas(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_rows,
                 int64_t n_cols, ThreadPool& pool) {
    const DotKernels* k = dot_kernels();
    const size_t rb = dtype_row_bytes(wt, n_cols);
    const uint8_t* wb = (const uint8_t*)w;
    // Work items are (row block, token tile) pairs, block-major so that a chunk of items reuses its dequantized block.
    const int64_t block_rows = gemm_block_rows(n_rows);
    const int64_t n_blocks = ceil_div(n_rows, block_rows);
    const int64_t n_tiles = std::max(ceil_div(n_tokens, kMaxTileTokens),
                                     std::min(ceil_div(kMinItems, n_blocks), n_tokens / kMinTileTokens));
    pool.parallel_for(n_blocks * n_tiles, 1, [&](int64_t begin, int64_t end) {
        thread_local std::vector<float> block;  // this worker's dequantized rows; grows once to the largest block
        int64_t have = -1;                      // which block `block` holds, within this chunk
        for (int64_t item = begin; item < end; item++) {
            const int64_t b = item / n_tiles, tile = item % n_tiles;
            const int64_t r0 = b * block_rows, nr = std::min(block_rows, n_rows - r0);
            const int64_t t0 = tile * n_tokens / n_tiles, nt = (tile + 1) * n_tokens / n_tiles - t0;
            const float* wf = (const float*)(wb + r0 * rb);  // F32 weights: sgemm reads the rows in place
            if (wt != DType::DTYPE_F32) {
                if (b != have) {
                    if ((int64_t)block.size() < nr * n_cols) block.resize((size_t)(nr * n_cols));
                    for (int64_t r = 0; r < nr; r++)
                        k->dequantize_row(wt, wb + (r0 + r) * rb, block.data() + r * n_cols, n_cols);
                    have = b;
                }
                wf = block.data();
            }
            // y (nt, n_rows), columns [r0, r0 + nr) = x's tile (nt, n_cols) · the block's rows^T.
            gemm_f32_serial({x + t0 * n_cols, n_cols, false}, {wf, n_cols, true}, y + t0 * n_rows + r0, n_rows,
                            {nt, nr, n_cols});
        }
    });
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

void matvecs(DType wt, const MatvecOut* outs, int n_outs, const void* xq, int64_t n_cols, ThreadPool& pool) {
    const DotKernels* k = dot_kernels();
    const size_t rb = dtype_row_bytes(wt, n_cols);
    int64_t total = 0;
    for (int j = 0; j < n_outs; j++) total += outs[j].n_rows;
    pool.parallel_for(total, matvec_grain(rb), [&](int64_t b, int64_t e) {
        int64_t first = 0;  // the global index of output j's row 0
        for (int j = 0; j < n_outs && b < e; first += outs[j].n_rows, j++) {
            const int64_t lo = std::max(b, first), hi = std::min(e, first + outs[j].n_rows);
            if (lo >= hi) continue;
            k->dot_rows(wt, (const uint8_t*)outs[j].w + (lo - first) * rb, rb, xq, outs[j].y + (lo - first), hi - lo,
                        n_cols);
        }
    });
}

int64_t matmul_scratch_floats(int64_t n_rows, int64_t n_cols) {
    (void)n_rows;  // the dot path's Q8_0 activations for kDotGroupTokens tokens; the BLAS path uses its own
    return ceil_div(kDotGroupTokens * (int64_t)dtype_row_bytes(DType::DTYPE_Q8_0, round_up(n_cols, QK8_0)), 4);
}

int64_t matmul_blas_min_tokens() {
#if defined(EMBER_OPENBLAS) || defined(EMBER_ONEDNN)
    return kMinBlasTokens;
#else
    return 0;
#endif
}

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
        matmul_blas(wt, w, x, y, n_tokens, n_rows, n_cols, pool);
        return;
    }
#endif
    matmul_dots(wt, w, x, y, n_tokens, n_rows, n_cols, scratch, pool);
}

const char* matmul_blas_core() {
#if defined(EMBER_OPENBLAS)
    return openblas_get_corename();
#else
    return "";
#endif
}

const char* blas_coretype_advice(const char* core, bool avx512, bool avx2) {
    // OpenBLAS's generic x86-64 fallbacks (pre-AVX kernel sets).
    static const char* const kFallbacks[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom",
                                             "Katmai", "Coppermine", "Northwood", "Banias", "Barcelona", "Unknown"};
    if (!core || !*core) return "";
    bool fallback = false;
    for (const char* f : kFallbacks) fallback = fallback || std::strcmp(core, f) == 0;
    if (!fallback) return "";
    return avx512 ? "SkylakeX" : avx2 ? "Haswell" : "";
}

const char* matmul_blas_coretype_advice() {
#if defined(EMBER_OPENBLAS) && (defined(__x86_64__) || defined(_M_X64))
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return blas_coretype_advice(matmul_blas_core(), avx512, avx2);
#else
    return "";
#endif
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
