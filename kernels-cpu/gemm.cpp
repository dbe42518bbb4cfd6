// gemm_f32: C cut into tiles from the shape alone, one single-threaded sgemm per tile. A tile's sgemm packs its op(A)
// rows and op(B) columns before multiplying, so packing costs about 1/tile_rows + 1/tile_cols of the work whatever
// k is: tiles stay as large as the tile count allows, only the larger side is halved, and no edge goes below 128.
// Where that leaves too few tiles for the pool (a batch of 256 against a rank-32 to 1024 predictor, k = 4096 or
// 11008), k is cut into chunks too: each chunk's product goes to its own buffer and the chunks are summed in order.
#include "kernels-cpu/gemm.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels-cpu/blas-threads.h"

#if defined(EMBER_OPENBLAS)
#include <cblas.h>
#elif defined(EMBER_ONEDNN)
#include <dnnl.h>
#endif

namespace ember {

namespace {

// 48 work items keep 16 workers busy at equal items (3 each), and 12 workers too. At a 128-float edge packing
// costs about 1/64 of the products; measured on 2 Zen 5 cores, rank-512 training spent 22% of its time packing with
// 32 x 64 tiles. A chunk of k keeps at least 256 (the sgemm kernels' own k blocking is 256-384).
constexpr int64_t kTargetItems = 48;
constexpr int64_t kMinTileEdge = 128;
constexpr int64_t kMinChunkDepth = 256;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// op(X)(i, j) of a stored row-major X.
float at(const GemmOperand& x, int64_t i, int64_t j) {
    return x.transposed ? x.data[j * x.ld + i] : x.data[i * x.ld + j];
}

void check(const GemmOperand& a, const GemmOperand& b, const float* c, int64_t ldc, const GemmDims& d) {
    auto bad = [](const std::string& what) { throw std::invalid_argument("gemm_f32: " + what); };
    if (d.m < 0 || d.n < 0 || d.k < 0)
        bad("sizes must be >= 0, found m=" + std::to_string(d.m) + " n=" + std::to_string(d.n) +
            " k=" + std::to_string(d.k));
    // Stored shapes: A is (m, k) or, transposed, (k, m); B is (k, n) or (n, k).
    const int64_t a_cols = a.transposed ? d.m : d.k, b_cols = b.transposed ? d.k : d.n;
    auto short_ld = [&](const char* name, int64_t ld, int64_t cols) {
        if (ld < cols)
            bad(std::string(name) + "'s leading dimension " + std::to_string(ld) + " < its " + std::to_string(cols) +
                " columns");
    };
    short_ld("A", a.ld, a_cols);
    short_ld("B", b.ld, b_cols);
    if (ldc < d.n) bad("C's leading dimension " + std::to_string(ldc) + " < its " + std::to_string(d.n) + " columns");
    if (d.m > 0 && d.n > 0 && (!c || (d.k > 0 && (!a.data || !b.data)))) bad("null matrix");
}

// c (d.m, d.n), leading dimension ldc = op(a) · op(b) over d.k, on this thread.
void sgemm_on_thread(const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc, const GemmDims& d) {
    if (d.m == 0 || d.n == 0) return;
    if (d.k == 0) {
        for (int64_t i = 0; i < d.m; i++) std::fill_n(c + i * ldc, d.n, 0.0f);
        return;
    }
#if defined(EMBER_OPENBLAS)
    blas_single_thread();
    cblas_sgemm(CblasRowMajor, a.transposed ? CblasTrans : CblasNoTrans, b.transposed ? CblasTrans : CblasNoTrans,
                (int)d.m, (int)d.n, (int)d.k, 1.0f, a.data, (int)a.ld, b.data, (int)b.ld, 0.0f, c, (int)ldc);
#elif defined(EMBER_ONEDNN)
    blas_single_thread();
    const dnnl_status_t st = dnnl_sgemm(a.transposed ? 'T' : 'N', b.transposed ? 'T' : 'N', d.m, d.n, d.k, 1.0f,
                                        a.data, a.ld, b.data, b.ld, 0.0f, c, ldc);
    if (st != dnnl_success)
        throw std::runtime_error("gemm_f32: dnnl_sgemm(" + std::to_string(d.m) + " x " + std::to_string(d.n) +
                                 " x " + std::to_string(d.k) + ") failed with status " + std::to_string((int)st));
#else
    // Row i accumulates k scaled rows of op(b).
    for (int64_t i = 0; i < d.m; i++) {
        float* ci = c + i * ldc;
        std::fill_n(ci, d.n, 0.0f);
        for (int64_t l = 0; l < d.k; l++) {
            const float ail = at(a, i, l);
            for (int64_t j = 0; j < d.n; j++) ci[j] += ail * at(b, l, j);
        }
    }
#endif
}

// One work item: C rows [i0, i0+mt), columns [j0, j0+nt), summed over k in [k0, k0+kt).
struct Block {
    int64_t i0, mt, j0, nt, k0, kt;
};

// dst (mt, nt), leading dimension ldd = the block's product, on this thread.
void gemm_block(const GemmOperand& a, const GemmOperand& b, const Block& q, float* dst, int64_t ldd) {
    // op(A)(i0, k0) and op(B)(k0, j0) in the stored matrices.
    const GemmOperand aq{a.transposed ? a.data + q.k0 * a.ld + q.i0 : a.data + q.i0 * a.ld + q.k0, a.ld, a.transposed};
    const GemmOperand bq{b.transposed ? b.data + q.j0 * b.ld + q.k0 : b.data + q.k0 * b.ld + q.j0, b.ld, b.transposed};
    sgemm_on_thread(aq, bq, dst, ldd, {q.mt, q.nt, q.kt});
}

}  // namespace

GemmTiles gemm_f32_tiles(int64_t m, int64_t n, int64_t k) {
    GemmTiles t{std::max<int64_t>(m, 1), std::max<int64_t>(n, 1), std::max<int64_t>(k, 1)};
    while (ceil_div(m, t.rows) * ceil_div(n, t.cols) < kTargetItems) {
        const bool rows_can = t.rows >= 2 * kMinTileEdge, cols_can = t.cols >= 2 * kMinTileEdge;
        if (rows_can && (t.rows >= t.cols || !cols_can))
            t.rows = round_up(ceil_div(t.rows, 2), 16);
        else if (cols_can)
            t.cols = round_up(ceil_div(t.cols, 2), 16);
        else
            break;
    }
    const int64_t tiles = ceil_div(m, t.rows) * ceil_div(n, t.cols);
    const int64_t chunks = std::min(ceil_div(kTargetItems, tiles), k / kMinChunkDepth);
    if (chunks > 1) t.depth = round_up(ceil_div(k, chunks), 16);
    return t;
}

void gemm_f32(const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc, const GemmDims& d,
              ThreadPool& pool) {
    check(a, b, c, ldc, d);
    if (d.m == 0 || d.n == 0) return;
    const GemmTiles t = gemm_f32_tiles(d.m, d.n, d.k);
    const int64_t tiles_m = ceil_div(d.m, t.rows), tiles_n = ceil_div(d.n, t.cols);
    const int64_t chunks = d.k > t.depth ? ceil_div(d.k, t.depth) : 1;
    // Chunk 0 writes C; chunk c > 0 writes slot c - 1 of `partial` (m, n each), this thread's, grown once.
    // (A thread_local named inside the lambdas would be each worker's own: they see it through `part`.)
    thread_local std::vector<float> partial;
    const size_t slot = (size_t)(d.m * d.n);
    if (chunks > 1 && partial.size() < (size_t)(chunks - 1) * slot) partial.resize((size_t)(chunks - 1) * slot);
    float* part = partial.data();
    pool.parallel_for(chunks * tiles_m * tiles_n, 1, [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; item++) {
            const int64_t chunk = item / (tiles_m * tiles_n), tile = item % (tiles_m * tiles_n);
            Block q;
            q.i0 = tile / tiles_n * t.rows, q.mt = std::min(t.rows, d.m - q.i0);
            q.j0 = tile % tiles_n * t.cols, q.nt = std::min(t.cols, d.n - q.j0);
            q.k0 = chunk * t.depth, q.kt = chunks > 1 ? std::min(t.depth, d.k - q.k0) : d.k;
            if (chunk == 0)
                gemm_block(a, b, q, c + q.i0 * ldc + q.j0, ldc);
            else
                gemm_block(a, b, q, part + (size_t)(chunk - 1) * slot + q.i0 * d.n + q.j0, d.n);
        }
    });
    if (chunks == 1) return;
    // C += the chunks' products, in chunk order, rows over the pool.
    pool.parallel_for(d.m, 4, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; i++) {
            float* ci = c + i * ldc;
            for (int64_t ch = 1; ch < chunks; ch++) {
                const float* pi = part + (size_t)(ch - 1) * slot + i * d.n;
                for (int64_t j = 0; j < d.n; j++) ci[j] += pi[j];
            }
        }
    });
}

void gemm_f32_serial(const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc, const GemmDims& d) {
    check(a, b, c, ldc, d);
    sgemm_on_thread(a, b, c, ldc, d);
}

void gemm_f32_ref(const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc, const GemmDims& d) {
    check(a, b, c, ldc, d);
    for (int64_t i = 0; i < d.m; i++)
        for (int64_t j = 0; j < d.n; j++) {
            double s = 0.0;
            for (int64_t l = 0; l < d.k; l++) s += (double)at(a, i, l) * (double)at(b, l, j);
            c[i * ldc + j] = (float)s;
        }
}

}  // namespace ember
