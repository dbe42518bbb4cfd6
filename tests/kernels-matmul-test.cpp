// matmul.h: matvec and matmul against matmul_ref (double) for every weight type on odd shapes, 1-3 threads.
// Error bounds per output, with S = sum_c |w_rc x_c|:
//   float activations (F32/F16/BF16 weights, and the BLAS path for every type): |y - ref| <= tol * S
//   Q8_0-quantized activations (matvec and the "dot" path for Q8_0/Q4_0): the same against a reference
//   computed on the dequantized activations, and |y - ref| <= sum_c |w_rc| |x_c - xq_c| + tol * S
//   against the float reference.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/quant.h"

namespace ember {
namespace {

struct MatCase {
    DType type;
    double tol;  // relative to S, for float accumulation
};

const MatCase kMatCases[] = {
    {DType::DTYPE_F32, 2e-5}, {DType::DTYPE_F16, 2e-5}, {DType::DTYPE_BF16, 2e-5},
    {DType::DTYPE_Q8_0, 2e-5}, {DType::DTYPE_Q4_0, 2e-5},
};

std::vector<float> randn(int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v((size_t)n);
    for (auto& x : v) x = nd(rng);
    return v;
}

struct Problem {
    DType t;
    int64_t rows, cols, tokens;
    std::vector<uint8_t> w;
    std::vector<float> wf;  // dequantized weights
    std::vector<float> x;   // (tokens, cols)
    std::vector<float> xd;  // x through Q8_0 and back (what the quantized dot path sees)
};

Problem make_problem(DType t, int64_t rows, int64_t cols, int64_t tokens, uint32_t seed) {
    Problem p{t, rows, cols, tokens, {}, {}, {}, {}};
    const size_t rb = dtype_row_bytes(t, cols);
    p.w.resize(rb * rows);
    p.wf.resize((size_t)(rows * cols));
    for (int64_t r = 0; r < rows; r++) {
        const auto f = randn(cols, seed + (uint32_t)r);
        quantize_row(t, f.data(), p.w.data() + r * rb, cols);
        dequantize_row(t, p.w.data() + r * rb, p.wf.data() + r * cols, cols);
    }
    p.x = randn(tokens * cols, seed ^ 0x9e3779b9u);
    p.xd = p.x;
    if (dot_vec_type(t) == DType::DTYPE_Q8_0) {
        std::vector<uint8_t> q(dot_vec_bytes(t, cols));
        for (int64_t k = 0; k < tokens; k++) {
            quantize_row(DType::DTYPE_Q8_0, p.x.data() + k * cols, q.data(), cols);
            dequantize_row(DType::DTYPE_Q8_0, q.data(), p.xd.data() + k * cols, cols);
        }
    }
    return p;
}

// Checks y (tokens, rows) against the references; quantized_x says whether the activations went through Q8_0.
void check(const Problem& p, const std::vector<float>& y, bool quantized_x, double tol, const std::string& what) {
    std::vector<float> ref((size_t)(p.tokens * p.rows)), ref_q((size_t)(p.tokens * p.rows));
    matmul_ref(p.t, p.w.data(), p.x.data(), ref.data(), p.tokens, p.rows, p.cols);
    matmul_ref(p.t, p.w.data(), p.xd.data(), ref_q.data(), p.tokens, p.rows, p.cols);
    for (int64_t k = 0; k < p.tokens; k++) {
        for (int64_t r = 0; r < p.rows; r++) {
            double s = 0.0, qerr = 0.0;
            for (int64_t c = 0; c < p.cols; c++) {
                const double w = p.wf[r * p.cols + c];
                s += std::fabs(w * p.x[k * p.cols + c]);
                qerr += std::fabs(w) * std::fabs((double)p.x[k * p.cols + c] - p.xd[k * p.cols + c]);
            }
            const size_t i = (size_t)(k * p.rows + r);
            if (quantized_x) {
                ASSERT_LE(std::fabs((double)y[i] - ref_q[i]), tol * s + 1e-30) << what << " t=" << k << " r=" << r;
                ASSERT_LE(std::fabs((double)y[i] - ref[i]), qerr + tol * s) << what << " t=" << k << " r=" << r;
            } else {
                ASSERT_LE(std::fabs((double)y[i] - ref[i]), tol * s + 1e-30) << what << " t=" << k << " r=" << r;
            }
        }
    }
}

class KernelsMatmul : public ::testing::TestWithParam<std::tuple<MatCase, int>> {};

TEST_P(KernelsMatmul, MatvecMatchesReference) {
    const MatCase c = std::get<0>(GetParam());
    ThreadPool pool(std::get<1>(GetParam()));
    for (int64_t rows : {1, 7, 33, 257}) {
        for (int64_t cols : {32, 96, 4096}) {
            const Problem p = make_problem(c.type, rows, cols, 1, (uint32_t)(rows * 131 + cols));
            std::vector<uint8_t> xq(dot_vec_bytes(c.type, cols));
            dot_prepare_vec(c.type, p.x.data(), xq.data(), cols);
            std::vector<float> y((size_t)rows + 1, 77.0f);
            matvec(c.type, p.w.data(), xq.data(), y.data(), rows, cols, pool);
            ASSERT_EQ(y[rows], 77.0f) << "wrote past y";
            y.resize((size_t)rows);
            const std::string what = std::string(dtype_name(c.type)) + " " + std::to_string(rows) + "x" +
                                     std::to_string(cols) + " threads=" + std::to_string(pool.size());
            check(p, y, dot_vec_type(c.type) == DType::DTYPE_Q8_0, c.tol, what);
            if (dot_vec_type(c.type) == DType::DTYPE_Q8_0) {  // exactly the scalar reference, row by row
                const size_t rb = dtype_row_bytes(c.type, cols);
                for (int64_t r = 0; r < rows; r++) {
                    ASSERT_EQ(y[r], dot_row_ref(c.type, p.w.data() + r * rb, xq.data(), cols)) << what << " r=" << r;
                }
            }
        }
    }
}

TEST_P(KernelsMatmul, MatvecLargeRowCount) {  // many chunks per thread, rows not a multiple of the grain
    const MatCase c = std::get<0>(GetParam());
    ThreadPool pool(std::get<1>(GetParam()));
    const int64_t rows = 1031, cols = 4096;
    const Problem p = make_problem(c.type, rows, cols, 1, 5);
    std::vector<uint8_t> xq(dot_vec_bytes(c.type, cols));
    dot_prepare_vec(c.type, p.x.data(), xq.data(), cols);
    std::vector<float> y((size_t)rows), y1((size_t)rows);
    matvec(c.type, p.w.data(), xq.data(), y.data(), rows, cols, pool);
    dot_rows(c.type, p.w.data(), dtype_row_bytes(c.type, cols), xq.data(), y1.data(), rows, cols);
    EXPECT_EQ(y, y1);  // the split over threads does not change any row's result
    check(p, y, dot_vec_type(c.type) == DType::DTYPE_Q8_0, c.tol, "large");
}

TEST_P(KernelsMatmul, MatvecsEqualsOneMatvecPerOutput) {  // outputs of uneven sizes, chunks spanning two of them
    const MatCase c = std::get<0>(GetParam());
    ThreadPool pool(std::get<1>(GetParam()));
    const int64_t cols = 96;
    const std::vector<int64_t> sizes = {1031, 7, 0, 33, 257};
    std::vector<Problem> ps;
    for (size_t j = 0; j < sizes.size(); j++) ps.push_back(make_problem(c.type, sizes[j], cols, 1, 11 + (uint32_t)j));
    std::vector<uint8_t> xq(dot_vec_bytes(c.type, cols));
    dot_prepare_vec(c.type, ps[0].x.data(), xq.data(), cols);  // one input vector for all
    std::vector<std::vector<float>> ys, ys1;
    std::vector<MatvecOut> outs;
    for (size_t j = 0; j < sizes.size(); j++) {
        ys.emplace_back((size_t)sizes[j] + 1, 77.0f);
        ys1.emplace_back((size_t)sizes[j] + 1, 77.0f);
    }
    for (size_t j = 0; j < sizes.size(); j++) outs.push_back({ps[j].w.data(), ys[j].data(), sizes[j]});
    matvecs(c.type, outs.data(), (int)outs.size(), xq.data(), cols, pool);
    for (size_t j = 0; j < sizes.size(); j++) {
        matvec(c.type, ps[j].w.data(), xq.data(), ys1[j].data(), sizes[j], cols, pool);
        ASSERT_EQ(ys[j].back(), 77.0f) << "output " << j << ": wrote past y";
        EXPECT_EQ(ys[j], ys1[j]) << dtype_name(c.type) << " output " << j << " (" << sizes[j] << " rows)";
        for (int64_t r = 0; r < sizes[j]; r++)
            ASSERT_NE(ys[j][(size_t)r], 77.0f) << "output " << j << " row " << r << " not written";
    }
}

TEST_P(KernelsMatmul, MatmulMatchesReference) {
    const MatCase c = std::get<0>(GetParam());
    ThreadPool pool(std::get<1>(GetParam()));
    for (int64_t tokens : {1, 3, 8, 19}) {
        for (int64_t rows : {7, 33, 257, 600}) {
            for (int64_t cols : {32, 96, 4096}) {
                if (rows * cols * tokens > 257 * 4096 * 8) continue;  // keep the double reference quick
                const Problem p = make_problem(c.type, rows, cols, tokens, (uint32_t)(tokens + rows * 7 + cols));
                std::vector<float> scratch((size_t)matmul_scratch_floats(rows, cols));
                std::vector<float> y((size_t)(tokens * rows) + 1, 55.0f);
                matmul(c.type, p.w.data(), p.x.data(), y.data(), tokens, rows, cols, scratch.data(), pool);
                ASSERT_EQ(y.back(), 55.0f) << "wrote past y";
                y.pop_back();
                const std::string backend = matmul_backend(tokens);
                const std::string what = std::string(dtype_name(c.type)) + " " + std::to_string(tokens) + "x" +
                                         std::to_string(rows) + "x" + std::to_string(cols) + " " + backend +
                                         " threads=" + std::to_string(pool.size());
                check(p, y, backend == "dot" && dot_vec_type(c.type) == DType::DTYPE_Q8_0, c.tol, what);
            }
        }
    }
}

std::string mat_name(const ::testing::TestParamInfo<std::tuple<MatCase, int>>& info) {
    return std::string(dtype_name(std::get<0>(info.param).type)) + "_t" + std::to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, KernelsMatmul,
                         ::testing::Combine(::testing::ValuesIn(kMatCases), ::testing::Values(1, 2, 3)), mat_name);

// The BLAS path splits the work by the shapes alone (here 2 row blocks x 4 token tiles), so every thread count
// gives the same floats; the dot path computes each output on its own.
TEST(KernelsMatmulApi, SameResultForAnyThreadCount) {
    const int64_t tokens = 530, rows = 300, cols = 64;
    for (const MatCase& c : kMatCases) {
        const Problem p = make_problem(c.type, rows, cols, tokens, 99);
        std::vector<float> scratch((size_t)matmul_scratch_floats(rows, cols));
        std::vector<float> y1((size_t)(tokens * rows));
        for (int threads : {1, 2, 3}) {
            ThreadPool pool(threads);
            std::vector<float> y((size_t)(tokens * rows));
            matmul(c.type, p.w.data(), p.x.data(), y.data(), tokens, rows, cols, scratch.data(), pool);
            if (threads == 1)
                y1 = y;
            else
                ASSERT_EQ(y, y1) << dtype_name(c.type) << " threads=" << threads;
        }
        const bool quantized_x =
            std::string(matmul_backend(tokens)) == "dot" && dot_vec_type(c.type) == DType::DTYPE_Q8_0;
        check(p, y1, quantized_x, c.tol, std::string(dtype_name(c.type)) + " 530 tokens");
    }
}

TEST(KernelsMatmulApi, ScratchAndBackend) {
    EXPECT_GE(matmul_scratch_floats(7, 96), 7 * 96);
    EXPECT_GT(matmul_scratch_floats(11008, 4096), 0);
    EXPECT_STREQ(matmul_backend(1), "dot");
    const std::string b = matmul_backend(512);
    EXPECT_TRUE(b == "openblas" || b == "onednn" || b == "dot") << b;
}

}  // namespace
}  // namespace ember

// OpenBLAS's generic fallbacks get the OPENBLAS_CORETYPE that fits the CPU; a recognised CPU and a CPU without
// AVX2 get nothing.
TEST(MatmulBlasCore, AdviceOnlyForGenericFallbacks) {
    EXPECT_STREQ(ember::blas_coretype_advice("Prescott", true, true), "SkylakeX");
    EXPECT_STREQ(ember::blas_coretype_advice("Prescott", false, true), "Haswell");
    EXPECT_STREQ(ember::blas_coretype_advice("Nehalem", false, false), "");
    EXPECT_STREQ(ember::blas_coretype_advice("Cooperlake", true, true), "");
    EXPECT_STREQ(ember::blas_coretype_advice("Haswell", true, true), "");
    EXPECT_STREQ(ember::blas_coretype_advice("", true, true), "");
    EXPECT_STREQ(ember::blas_coretype_advice(nullptr, true, true), "");
    // Whatever this machine's OpenBLAS chose, the advice is one of the two values or none.
    const std::string here = ember::matmul_blas_coretype_advice();
    EXPECT_TRUE(here.empty() || here == "SkylakeX" || here == "Haswell") << here;
}
