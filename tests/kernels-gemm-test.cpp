// gemm.h: gemm_f32 against gemm_f32_ref (double) for every transpose pair on odd shapes with padded leading
// dimensions (some with k in chunks), 1-3 threads; the same bits for any thread count; the blocks; bad arguments.
// Error bound per output, with S = sum_l |op(A)_il op(B)_lj|: |c - ref| <= 1e-5 * S (float accumulation).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels-cpu/gemm.h"

namespace ember {
namespace {

// A stored matrix of seeded uniform values in [-1, 1) for op(X) of shape (rows, cols): stored (rows, cols) or,
// transposed, (cols, rows), each stored row padded by `pad` floats of NaN, which a correct product never reads.
struct Stored {
    std::vector<float> data;
    GemmOperand op;
};
Stored stored(int64_t rows, int64_t cols, bool transposed, int64_t pad, uint32_t seed) {
    const int64_t s_rows = transposed ? cols : rows, s_cols = transposed ? rows : cols, ld = s_cols + pad;
    Stored s;
    s.data.assign((size_t)(std::max<int64_t>(s_rows, 1) * ld), NAN);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int64_t r = 0; r < s_rows; r++)
        for (int64_t c = 0; c < s_cols; c++) s.data[(size_t)(r * ld + c)] = u(rng);
    s.op = {s.data.data(), ld, transposed};
    return s;
}
float op_at(const GemmOperand& x, int64_t i, int64_t j) {
    return x.transposed ? x.data[j * x.ld + i] : x.data[i * x.ld + j];
}

struct Shape {
    int64_t m, n, k;
};
// The last three cut k into chunks (few tiles of C, k of several 256s).
const Shape kShapes[] = {{1, 1, 1}, {7, 5, 3}, {33, 65, 17}, {256, 32, 300}, {40, 1100, 24}, {97, 131, 64},
                         {3, 200, 257}, {40, 64, 3001}, {256, 160, 1100}, {17, 300, 777}};

TEST(Gemm, MatchesReferenceForEveryTransposePair) {
    for (int threads = 1; threads <= 3; threads++) {
        ThreadPool pool(threads);
        for (const Shape& sh : kShapes)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    SCOPED_TRACE("threads " + std::to_string(threads) + ", m " + std::to_string(sh.m) + " n " +
                                 std::to_string(sh.n) + " k " + std::to_string(sh.k) + ", trans " +
                                 std::to_string(ta) + std::to_string(tb));
                    const Stored a = stored(sh.m, sh.k, ta, 3, 11), b = stored(sh.k, sh.n, tb, 5, 12);
                    const int64_t ldc = sh.n + 2;
                    std::vector<float> c((size_t)(sh.m * ldc), -7.0f), ref(c);
                    gemm_f32(a.op, b.op, c.data(), ldc, {sh.m, sh.n, sh.k}, pool);
                    gemm_f32_ref(a.op, b.op, ref.data(), ldc, {sh.m, sh.n, sh.k});
                    int bad = 0;
                    for (int64_t i = 0; i < sh.m; i++) {
                        for (int64_t j = 0; j < sh.n; j++) {
                            double scale = 0.0;
                            for (int64_t l = 0; l < sh.k; l++)
                                scale += std::fabs((double)op_at(a.op, i, l) * op_at(b.op, l, j));
                            const double err = std::fabs((double)c[(size_t)(i * ldc + j)] - ref[(size_t)(i * ldc + j)]);
                            if (!(err <= 1e-5 * scale + 1e-30) && bad++ < 5)
                                ADD_FAILURE() << "c[" << i << "][" << j << "] = " << c[(size_t)(i * ldc + j)]
                                              << ", reference " << ref[(size_t)(i * ldc + j)];
                        }
                        // The padding past n stays as it was.
                        for (int64_t j = sh.n; j < ldc; j++) ASSERT_EQ(c[(size_t)(i * ldc + j)], -7.0f);
                    }
                    EXPECT_EQ(bad, 0);
                }
    }
}

TEST(Gemm, SameBitsForAnyThreadCount) {
    // Many tiles on both sides; then few tiles and k in chunks.
    for (const Shape& sh : {Shape{300, 700, 129}, Shape{64, 200, 5000}}) {
        SCOPED_TRACE("m " + std::to_string(sh.m) + " n " + std::to_string(sh.n) + " k " + std::to_string(sh.k));
        const Stored a = stored(sh.m, sh.k, true, 0, 21), b = stored(sh.k, sh.n, false, 0, 22);
        std::vector<std::vector<float>> outs;
        for (int threads : {1, 2, 3, 5}) {
            ThreadPool pool(threads);
            std::vector<float> c((size_t)(sh.m * sh.n));
            gemm_f32(a.op, b.op, c.data(), sh.n, {sh.m, sh.n, sh.k}, pool);
            outs.push_back(c);
        }
        for (size_t t = 1; t < outs.size(); t++) EXPECT_EQ(outs[t], outs[0]) << "thread set " << t;
    }
}

TEST(Gemm, EmptyInnerDimensionGivesZeros) {
    ThreadPool pool(2);
    std::vector<float> c(12, 5.0f);
    const float dummy = 1.0f;
    gemm_f32({&dummy, 1, false}, {&dummy, 4, false}, c.data(), 4, {3, 4, 0}, pool);
    for (float v : c) EXPECT_EQ(v, 0.0f);
    gemm_f32({nullptr, 5, false}, {nullptr, 1, false}, nullptr, 1, {0, 0, 5}, pool);  // nothing to write
}

TEST(Gemm, BlocksStayLargeAndSplitKOnlyWhenTilesAreFew) {
    for (const Shape& sh : {Shape{256, 32, 4096}, Shape{256, 1024, 11008}, Shape{11008, 32, 256}, Shape{32, 4096, 256},
                            Shape{1, 1, 1}, Shape{5, 3000, 100}, Shape{4096, 4096, 4096}, Shape{256, 512, 300}}) {
        SCOPED_TRACE(std::to_string(sh.m) + " x " + std::to_string(sh.n) + " x " + std::to_string(sh.k));
        const GemmTiles t = gemm_f32_tiles(sh.m, sh.n, sh.k);
        ASSERT_GT(t.rows, 0);
        ASSERT_GT(t.cols, 0);
        ASSERT_GT(t.depth, 0);
        EXPECT_LE(t.rows, std::max<int64_t>(sh.m, 1));
        EXPECT_LE(t.cols, std::max<int64_t>(sh.n, 1));
        EXPECT_LE(t.depth, std::max<int64_t>(sh.k, 1));
        // A split edge stays at 128 or more and keeps sgemm's register tiles whole.
        EXPECT_TRUE(t.rows == sh.m || (t.rows >= 128 && t.rows % 16 == 0)) << t.rows;
        EXPECT_TRUE(t.cols == sh.n || (t.cols >= 128 && t.cols % 16 == 0)) << t.cols;
        const int64_t tiles = ((sh.m + t.rows - 1) / t.rows) * ((sh.n + t.cols - 1) / t.cols);
        const int64_t chunks = (sh.k + t.depth - 1) / t.depth;
        EXPECT_TRUE(tiles < 48 || chunks == 1) << tiles;  // k is cut only when the tiles are too few
        EXPECT_TRUE(chunks == 1 || t.depth >= 256) << t.depth;
        // Enough blocks for the pool, or neither side can be halved and k allows no more chunks.
        EXPECT_TRUE(tiles * chunks >= 48 || (t.rows < 256 && t.cols < 256 && chunks >= sh.k / 256))
            << t.rows << " x " << t.cols << " x " << t.depth;
    }
    // Predictor training's widest rank-sized product (batch 256, rank 1024, k 11008): 16 tiles of 128 x 128 and k in
    // three chunks.
    const GemmTiles w = gemm_f32_tiles(256, 1024, 11008);
    EXPECT_EQ(w.rows, 128);
    EXPECT_EQ(w.cols, 128);
    EXPECT_EQ((11008 + w.depth - 1) / w.depth, 3);
}

TEST(Gemm, BadArgumentsThrowNamingThem) {
    ThreadPool pool(1);
    std::vector<float> x(64, 1.0f), c(64);
    auto expect_error = [](auto fn, const std::string& needle) {
        try {
            fn();
            ADD_FAILURE() << "no exception, expected one naming '" << needle << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    expect_error([&] { gemm_f32({x.data(), 4, false}, {x.data(), 4, false}, c.data(), 4, {-1, 4, 4}, pool); },
                 "m=-1");
    expect_error([&] { gemm_f32({x.data(), 3, false}, {x.data(), 4, false}, c.data(), 4, {4, 4, 4}, pool); },
                 "A's leading dimension 3");
    expect_error([&] { gemm_f32({x.data(), 4, false}, {x.data(), 3, true}, c.data(), 4, {4, 4, 4}, pool); },
                 "B's leading dimension 3");
    expect_error([&] { gemm_f32({x.data(), 4, false}, {x.data(), 4, false}, c.data(), 2, {4, 4, 4}, pool); },
                 "C's leading dimension 2");
    expect_error([&] { gemm_f32({nullptr, 4, false}, {x.data(), 4, false}, c.data(), 4, {4, 4, 4}, pool); },
                 "null");
}

}  // namespace
}  // namespace ember
