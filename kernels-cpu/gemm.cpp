// gemm_f32: C cut into tiles from the shape alone, one single-threaded sgemm per tile over all of k. A tile's
// sgemm packs its op(A) rows and op(B) columns before multiplying, so packing costs about 1/tile_rows + 1/tile_cols
// of the work: tiles stay as large as the tile count allows, and only the larger side is halved.
#include "kernels-cpu/gemm.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels-cpu/blas-threads.h"

#if defined(EMBER_OPENBLAS)
#include <cblas.h>
#elif defined(EMBER_ONEDNN)
#include <dnnl.h>
#endif

namespace ember {

namespace {

// Predictor training's products (batch 256, ranks 32-1024, 7B widths) on 16 cores: 48 tiles keep 16 workers
// 100% busy at equal tiles (3 each) and 12 workers too; 32 rows or columns is the smallest edge worth a call.
constexpr int64_t kTargetTiles = 48;
constexpr int64_t kMinTileEdge = 32;

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
    if (a.ld < a_cols) bad("A's leading dimension " + std::to_string(a.ld) + " < its " + std::to_string(a_cols) + " columns");
    if (b.ld < b_cols) bad("B's leading dimension " + std::to_string(b.ld) + " < its " + std::to_string(b_cols) + " columns");
    if (ldc < d.n) bad("C's leading dimension " + std::to_string(ldc) + " < its " + std::to_string(d.n) + " columns");
    if (d.m > 0 && d.n > 0 && (!c || (d.k > 0 && (!a.data || !b.data)))) bad("null matrix");
}

// C tile (rows [i0, i0+mt), columns [j0, j0+nt)) over all of k, on this thread.
void gemm_tile(const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc, int64_t k, int64_t i0, int64_t mt,
               int64_t j0, int64_t nt) {
    // The tile's first element of op(A) row i0 and of op(B) column j0.
    const float* ap = a.transposed ? a.data + i0 : a.data + i0 * a.ld;
    const float* bp = b.transposed ? b.data + j0 * b.ld : b.data + j0;
    float* cp = c + i0 * ldc + j0;
    if (k == 0) {
        for (int64_t i = 0; i < mt; i++) std::fill_n(cp + i * ldc, nt, 0.0f);
        return;
    }
#if defined(EMBER_OPENBLAS)
    blas_single_thread();
    cblas_sgemm(CblasRowMajor, a.transposed ? CblasTrans : CblasNoTrans, b.transposed ? CblasTrans : CblasNoTrans,
                (int)mt, (int)nt, (int)k, 1.0f, ap, (int)a.ld, bp, (int)b.ld, 0.0f, cp, (int)ldc);
#elif defined(EMBER_ONEDNN)
    blas_single_thread();
    const dnnl_status_t st = dnnl_sgemm(a.transposed ? 'T' : 'N', b.transposed ? 'T' : 'N', mt, nt, k, 1.0f, ap,
                                        a.ld, bp, b.ld, 0.0f, cp, ldc);
    if (st != dnnl_success)
        throw std::runtime_error("gemm_f32: dnnl_sgemm(" + std::to_string(mt) + " x " + std::to_string(nt) + " x " +
                                 std::to_string(k) + ") failed with status " + std::to_string((int)st));
#else
    // Row i of C accumulates k scaled rows of op(B) (contiguous when B is stored as is) or takes n dot products.
    const GemmOperand at_{ap, a.ld, a.transposed}, bt{bp, b.ld, b.transposed};
    for (int64_t i = 0; i < mt; i++) {
        float* ci = cp + i * ldc;
        std::fill_n(ci, nt, 0.0f);
        for (int64_t l = 0; l < k; l++) {
            const float ail = at(at_, i, l);
            for (int64_t j = 0; j < nt; j++) ci[j] += ail * at(bt, l, j);
        }
    }
#endif
}

}  // namespace

GemmTiles gemm_f32_tiles(int64_t m, int64_t n) {
    GemmTiles t{std::max<int64_t>(m, 1), std::max<int64_t>(n, 1)};
    while (ceil_div(m, t.rows) * ceil_div(n, t.cols) < kTargetTiles) {
        const bool rows_can = t.rows >= 2 * kMinTileEdge, cols_can = t.cols >= 2 * kMinTileEdge;
        if (rows_can && (t.rows >= t.cols || !cols_can))
            t.rows = round_up(ceil_div(t.rows, 2), 16);
        else if (cols_can)
            t.cols = round_up(ceil_div(t.cols, 2), 16);
        else
            break;
    }
    return t;
}

void gemm_f32(const GemmOperand& a, const GemmOperand& b, float* c, int64_t ldc, const GemmDims& d,
              ThreadPool& pool) {
    check(a, b, c, ldc, d);
    if (d.m == 0 || d.n == 0) return;
    const GemmTiles t = gemm_f32_tiles(d.m, d.n);
    const int64_t tiles_m = ceil_div(d.m, t.rows), tiles_n = ceil_div(d.n, t.cols);
    pool.parallel_for(tiles_m * tiles_n, 1, [&](int64_t begin, int64_t end) {
        for (int64_t tile = begin; tile < end; tile++) {
            const int64_t i0 = tile / tiles_n * t.rows, j0 = tile % tiles_n * t.cols;
            gemm_tile(a, b, c, ldc, d.k, i0, std::min(t.rows, d.m - i0), j0, std::min(t.cols, d.n - j0));
        }
    });
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
