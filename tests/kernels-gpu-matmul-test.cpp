// GPU activation preparation, GEMV and cuBLAS GEMM against kernels-cpu references, every weight type, odd sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/error.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/quant.h"
#include "kernels-gpu/cublas-check.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/matmul.h"
#include "tests/kernels-gpu-test-util.h"

namespace ember::gpu_test {
namespace {

// Q8_0 activations: the GPU quantizer gives the CPU quantizer's bits (quants and fp16 scale), in the GPU layout
// (n int8, then n/32 float scales).
TEST_F(Gpu, PrepareVecQ8MatchesCpuQuantizer) {
    for (int64_t n : {32, 96, 4096, 11008}) {
        std::vector<float> x = randn(n, 3.0f, 41 + (uint32_t)n);
        for (int i = 0; i < 32; i++) x[i] = 0.0f;  // an all-zero block: d = 0, quants 0
        x[33] = 127.5f;                            // a value that rounds half away from zero
        DeviceMem dx(x), dq(gpu::dot_vec_bytes(DType::DTYPE_Q4_0, n));
        ASSERT_EQ(dq.bytes(), (size_t)n + (size_t)n / 32 * 4);
        gpu::dot_prepare_vec(DType::DTYPE_Q4_0, dx.as<float>(), dq.as(), n, nullptr);
        const auto got = dq.to_host<uint8_t>();
        std::vector<block_q8_0> want(n / 32);
        quantize_row(DType::DTYPE_Q8_0, x.data(), want.data(), n);
        for (int64_t b = 0; b < n / 32; b++) {
            float d;
            std::memcpy(&d, got.data() + n + 4 * b, 4);
            ASSERT_EQ(d, fp16_to_f32(want[b].d)) << "scale of block " << b;
            for (int j = 0; j < 32; j++)
                ASSERT_EQ((int8_t)got[b * 32 + j], want[b].qs[j]) << "block " << b << " element " << j;
        }
    }
}

// dot_prepare_relu_vec: the bits of dot_prepare_vec on max(x, 0), for quantized and float activations, with x
// left as it was (the predictor's hidden layer stays readable).
TEST_F(Gpu, PrepareReluVecEqualsPrepareOfRelu) {
    for (DType t : {DType::DTYPE_Q4_0, DType::DTYPE_Q8_0, DType::DTYPE_F16, DType::DTYPE_F32}) {
        for (int64_t n : {32, 1024, 11008}) {
            SCOPED_TRACE(std::string(dtype_name(t)) + " n=" + std::to_string(n));
            std::vector<float> x = randn(n, 2.0f, 61 + (uint32_t)n), relu(n);
            for (int i = 0; i < 32; i++) x[i] = -std::fabs(x[i]);  // a block with no positive value: d = 0
            for (int64_t i = 0; i < n; i++) relu[i] = x[i] > 0.0f ? x[i] : 0.0f;
            DeviceMem dx(x), drelu(relu), dgot(gpu::dot_vec_bytes(t, n)), dwant(gpu::dot_vec_bytes(t, n));
            gpu::dot_prepare_relu_vec(t, dx.as<float>(), dgot.as(), n, nullptr);
            gpu::dot_prepare_vec(t, drelu.as<float>(), dwant.as(), n, nullptr);
            const auto got = dgot.to_host<uint8_t>(), want = dwant.to_host<uint8_t>();
            ASSERT_EQ(got.size(), want.size());
            for (size_t i = 0; i < got.size(); i++) ASSERT_EQ(got[i], want[i]) << "byte " << i;
            EXPECT_EQ(dx.to_host<float>(), x);
        }
    }
}

struct Shape {
    int64_t rows, cols;
};

// y = W x for every type, against the CPU's per-row reference (dot_row_ref, with the CPU-prepared x: the same
// quantized activations for Q8_0/Q4_0). Only the float summation order differs: |error| <= 2e-5 * sum |w_i x_i|.
TEST_F(Gpu, MatvecMatchesCpuEveryType) {
    for (DType t : kAllTypes) {
        const bool quant = dtype_block_elems(t) > 1;
        // Q8_0/Q4_0 rows whose bytes are a multiple of 16 stream through shared memory. Where a warp's share of a row
        // is 2 to 8 runs of 32 blocks, each lane keeps its activations in registers (3x11008 and 1100x16640 with 4
        // warps a row, 4096x12544 with 2, each with a partial last run; more in
        // MatvecQuantRowsWithActivationsInRegisters). Other rows go in two-stage tiles with 4 warps a row (1500x4096:
        // one tile a share; 5x40960: shares of 5 tiles, too long for registers), two (4096x2048 in Q8_0, one tile a
        // share) or one (16400x768: more rows than the GPU holds warps, so the warps stride and prefetch across rows);
        // 700x2080 and 2000x672 (rows of 2210 or 714 bytes for Q8_0) take the per-unit path. Rows of at most 16 blocks
        // go in runs of whole rows: 64 one-block rows a run (1x32: a run shorter than that), 9-block rows (a 70B
        // predictor's fc2) 7 a run with a short last run (4099x288), 3-block rows 21 a run (37x96, 1030x96), and more
        // runs than the GPU holds warps (9000x512).
        std::vector<Shape> shapes = {{1, 32},     {37, 96},      {1500, 4096}, {3, 11008},
                                     {700, 2080}, {1100, 16640}, {1030, 96},   {9000, 512}};
        if (quant)
            shapes.insert(shapes.end(),
                          {{4096, 12544}, {16400, 768}, {4099, 288}, {2000, 672}, {5, 40960}, {4096, 2048}});
        if (!quant) shapes.insert(shapes.end(), {{5, 1}, {129, 100}, {2000, 33}, {9, 4100}});
        for (const Shape s : shapes) {
            SCOPED_TRACE(std::string(dtype_name(t)) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols));
            const auto w = quantize_matrix(t, randn((size_t)s.rows * s.cols, 0.5f, 51), s.rows, s.cols);
            const auto wf = dequantize_matrix(t, w, s.rows, s.cols);
            const std::vector<float> x = randn(s.cols, 1.0f, 52);
            const PreparedVec px = prepare_vec_host(t, x);
            const std::vector<uint8_t>& xq_cpu = px.xq;
            const std::vector<float>& xv = px.seen;

            DeviceMem dw(w), dx(x), dxq(gpu::dot_vec_bytes(t, s.cols)), dy(s.rows * sizeof(float));
            gpu::dot_prepare_vec(t, dx.as<float>(), dxq.as(), s.cols, nullptr);
            gpu::matvec(t, dw.as(), dxq.as(), dy.as<float>(), s.rows, s.cols, nullptr);
            const auto got = dy.to_host<float>();
            const size_t rb = dtype_row_bytes(t, s.cols);
            for (int64_t r = 0; r < s.rows; r++) {
                const float want = dot_row_ref(t, w.data() + r * rb, xq_cpu.data(), s.cols);
                double mag = 0.0;
                for (int64_t c = 0; c < s.cols; c++) mag += std::fabs((double)wf[r * s.cols + c] * xv[c]);
                ASSERT_NEAR(got[r], want, 2e-5 * mag + 1e-6) << "row " << r;
            }
        }
    }
}

// Q8_0/Q4_0 rows whose warps' shares hold 2 to 8 runs of 32 blocks keep each lane's activations in registers
// (matvec_quant_xreg_kernel). For Q4_0: one warp a row with 4 runs (4101x4096: the last group of rows is partial)
// and 5 (an odd count: the last run has no partner), two warps of 6 runs (4096x12288), four warps of 2 and 6 runs
// (1025x8192, 300x24576), four warps of 4 runs where the last share has only 3 (500x13824: its fourth run is
// empty), and more rows than the GPU holds warps (20000x2048: the warps stride over the rows several times). Q8_0
// takes two warps a row below 16384 rows, so its shares there are half as long.
TEST_F(Gpu, MatvecQuantRowsWithActivationsInRegisters) {
    const std::vector<Shape> shapes = {{4101, 4096}, {4099, 5120},  {4096, 12288}, {1025, 8192},
                                       {300, 24576}, {500, 13824}, {20000, 2048}};
    for (DType t : {DType::DTYPE_Q8_0, DType::DTYPE_Q4_0}) {
        for (const Shape s : shapes) {
            SCOPED_TRACE(std::string(dtype_name(t)) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols));
            const auto w = quantize_matrix(t, randn((size_t)s.rows * s.cols, 0.5f, 57), s.rows, s.cols);
            const std::vector<float> x = randn(s.cols, 1.0f, 58);
            const PreparedVec px = prepare_vec_host(t, x);
            DeviceMem dw(w), dx(x), dxq(gpu::dot_vec_bytes(t, s.cols)), dy((s.rows + 1) * sizeof(float));
            CUDA_CHECK(cudaMemset(dy.as(), 0xff, (s.rows + 1) * sizeof(float)));  // NaN where nothing is written
            gpu::dot_prepare_vec(t, dx.as<float>(), dxq.as(), s.cols, nullptr);
            gpu::matvec(t, dw.as(), dxq.as(), dy.as<float>(), s.rows, s.cols, nullptr);
            const auto got = dy.to_host<float>();
            const size_t rb = dtype_row_bytes(t, s.cols);
            std::vector<float> row(s.cols);
            for (int64_t r = 0; r < s.rows; r++) {
                const float want = dot_row_ref(t, w.data() + r * rb, px.xq.data(), s.cols);
                dequantize_row(t, w.data() + r * rb, row.data(), s.cols);
                double mag = 0.0;
                for (int64_t c = 0; c < s.cols; c++) mag += std::fabs((double)row[c] * px.seen[c]);
                ASSERT_NEAR(got[r], want, 2e-5 * mag + 1e-6) << "row " << r;
            }
            EXPECT_TRUE(std::isnan(got[s.rows])) << "the matvec wrote past its last row";
        }
    }
}

// Short quantized rows from any row of a matrix (the predictor's fc2 in two row ranges, gpu::predictor_scores_rows):
// the first run starts at every offset modulo 16, and nothing past the last row is written.
TEST_F(Gpu, MatvecShortQuantRowsFromAnyRow) {
    for (DType t : {DType::DTYPE_Q8_0, DType::DTYPE_Q4_0}) {
        const int64_t rows = 500, cols = 288;
        const auto w = quantize_matrix(t, randn((size_t)rows * cols, 0.5f, 55), rows, cols);
        const auto wf = dequantize_matrix(t, w, rows, cols);
        const std::vector<float> x = randn(cols, 1.0f, 56);
        const PreparedVec px = prepare_vec_host(t, x);
        const std::vector<uint8_t>& xq = px.xq;
        const std::vector<float>& xv = px.seen;
        const size_t rb = dtype_row_bytes(t, cols);
        DeviceMem dw(w), dx(x), dxq(gpu::dot_vec_bytes(t, cols)), dy(rows * sizeof(float));
        gpu::dot_prepare_vec(t, dx.as<float>(), dxq.as(), cols, nullptr);
        for (int64_t begin = 0; begin < 8; begin++) {
            SCOPED_TRACE(std::string(dtype_name(t)) + " from row " + std::to_string(begin));
            CUDA_CHECK(cudaMemset(dy.as(), 0xff, rows * sizeof(float)));  // NaN where nothing is written
            gpu::matvec(t, dw.as<uint8_t>() + begin * rb, dxq.as(), dy.as<float>(), rows - begin, cols, nullptr);
            const auto got = dy.to_host<float>();
            for (int64_t r = 0; r < rows - begin; r++) {
                const float want = dot_row_ref(t, w.data() + (begin + r) * rb, xq.data(), cols);
                double mag = 0.0;
                for (int64_t c = 0; c < cols; c++) mag += std::fabs((double)wf[(begin + r) * cols + c] * xv[c]);
                ASSERT_NEAR(got[r], want, 2e-5 * mag + 1e-6) << "row " << begin + r;
            }
            if (begin > 0) {
                EXPECT_TRUE(std::isnan(got[rows - begin])) << "the matvec wrote past its last row";
            }
        }
    }
}

// Short quantized rows that quantize float activations themselves (the predictor's fc2 reading its hidden layer):
// the bits of dot_prepare_vec (or dot_prepare_relu_vec) followed by matvec, for rows of 1, 3, 9 and 16 blocks (runs
// of 64, 21, 7 and 4 rows) from an even and an odd row; other rows are refused with the function's name.
TEST_F(Gpu, MatvecFromFloatsMatchesPrepareThenMatvec) {
    for (DType t : {DType::DTYPE_Q8_0, DType::DTYPE_Q4_0}) {
        for (const int64_t cols : {32, 96, 288, 512}) {
            const int64_t rows = 301;
            const auto w = quantize_matrix(t, randn((size_t)rows * cols, 0.5f, 57), rows, cols);
            const std::vector<float> x = randn(cols, 1.0f, 58);
            DeviceMem dw(w), dx(x), dxq(gpu::dot_vec_bytes(t, cols)), dy(rows * sizeof(float)),
                dwant(rows * sizeof(float));
            ASSERT_TRUE(gpu::matvec_quantizes_floats(t, dw.as(), cols));
            for (const bool relu : {false, true}) {
                for (const int64_t begin : {0, 1}) {
                    SCOPED_TRACE(std::string(dtype_name(t)) + " cols=" + std::to_string(cols) +
                                 (relu ? " relu" : "") + " from row " + std::to_string(begin));
                    const uint8_t* wr = dw.as<uint8_t>() + begin * dtype_row_bytes(t, cols);
                    if (relu)
                        gpu::dot_prepare_relu_vec(t, dx.as<float>(), dxq.as(), cols, nullptr);
                    else
                        gpu::dot_prepare_vec(t, dx.as<float>(), dxq.as(), cols, nullptr);
                    gpu::matvec(t, wr, dxq.as(), dwant.as<float>(), rows - begin, cols, nullptr);
                    CUDA_CHECK(cudaMemset(dy.as(), 0xff, rows * sizeof(float)));  // NaN where nothing is written
                    gpu::matvec_from_floats(t, wr, dx.as<float>(), relu, dy.as<float>(), rows - begin, cols, nullptr);
                    const auto got = dy.to_host<float>(), want = dwant.to_host<float>();
                    for (int64_t r = 0; r < rows - begin; r++) ASSERT_EQ(got[r], want[r]) << "row " << r;
                    if (begin > 0) {
                        EXPECT_TRUE(std::isnan(got[rows - begin])) << "the matvec wrote past its last row";
                    }
                }
            }
        }
    }
    DeviceMem dw(std::vector<uint8_t>(64 * 1024, 0)), dx(std::vector<float>(1024, 1.0f)), dy(64 * sizeof(float));
    EXPECT_FALSE(gpu::matvec_quantizes_floats(DType::DTYPE_Q8_0, dw.as(), 544));  // 17 blocks
    EXPECT_FALSE(gpu::matvec_quantizes_floats(DType::DTYPE_F16, dw.as(), 256));
    EXPECT_FALSE(gpu::matvec_quantizes_floats(DType::DTYPE_Q4_0, dw.as<uint8_t>() + 1, 256));  // odd address
    try {
        gpu::matvec_from_floats(DType::DTYPE_Q8_0, dw.as(), dx.as<float>(), false, dy.as<float>(), 4, 544, nullptr);
        FAIL() << "17 blocks are not short rows";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("gpu::matvec_from_floats"), std::string::npos) << e.what();
    }
}

// A misaligned weight pointer (offset by one element) takes the per-element path and still matches.
TEST_F(Gpu, MatvecUnalignedFloatRows) {
    const int64_t rows = 40, cols = 64;
    const std::vector<float> wf = randn((size_t)rows * cols + 1, 1.0f, 53), x = randn(cols, 1.0f, 54);
    DeviceMem dw(wf), dx(x), dy(rows * sizeof(float));
    gpu::matvec(DType::DTYPE_F32, dw.as<float>() + 1, dx.as(), dy.as<float>(), rows, cols, nullptr);
    const auto got = dy.to_host<float>();
    std::vector<float> want(rows);
    matmul_ref(DType::DTYPE_F32, wf.data() + 1, x.data(), want.data(), 1, rows, cols);
    for (int64_t r = 0; r < rows; r++) ASSERT_NEAR(got[r], want[r], 1e-4 * (1 + std::fabs(want[r]))) << r;
}

class Cublas : public Gpu {
protected:
    void SetUp() override {
        Gpu::SetUp();
        if (IsSkipped()) return;
        CUBLAS_CHECK(cublasCreate(&handle_));
    }
    void TearDown() override {
        if (handle_) cublasDestroy(handle_);
    }
    cublasHandle_t handle_ = nullptr;
};

// Y = X W^T through cuBLAS against matmul_ref (double). X is rounded to the weight's 16-bit type (F16 for F16,
// Q8_0, Q4_0; BF16 for BF16) and quantized weights to F16, so |error| <= tol * sum |w x| with tol = 1e-5 (F32),
// 2e-3 (F16 and quantized: two roundings of 2^-11), 1.6e-2 (BF16: 2^-8 per rounding). The workspace holds 7 weight
// rows, so quantized weights go through several slabs, the last one partial.
TEST_F(Cublas, MatmulMatchesReferenceEveryType) {
    for (DType t : kAllTypes) {
        for (const Shape s : {Shape{50, 64}, Shape{333, 4096}}) {
            for (int64_t n_tokens : {1, 17}) {
                SCOPED_TRACE(std::string(dtype_name(t)) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                             " tokens=" + std::to_string(n_tokens));
                const auto w = quantize_matrix(t, randn((size_t)s.rows * s.cols, 0.5f, 61), s.rows, s.cols);
                const auto wf = dequantize_matrix(t, w, s.rows, s.cols);
                const std::vector<float> x = randn((size_t)n_tokens * s.cols, 1.0f, 62);
                std::vector<float> want((size_t)n_tokens * s.rows);
                matmul_ref(t, w.data(), x.data(), want.data(), n_tokens, s.rows, s.cols);

                gpu::GemmWorkspace ws;
                ws.handle = handle_;
                ws.bytes = gpu::matmul_workspace_bytes(t, n_tokens, s.cols, 7);
                DeviceMem dws(ws.bytes), dw(w), dx(x), dy(want.size() * sizeof(float));
                ws.ptr = dws.as();
                gpu::matmul(t, dw.as(), dx.as<float>(), dy.as<float>(), n_tokens, s.rows, s.cols, ws, nullptr);
                const auto got = dy.to_host<float>();
                const double tol = t == DType::DTYPE_F32 ? 1e-5 : t == DType::DTYPE_BF16 ? 1.6e-2 : 2e-3;
                for (int64_t i = 0; i < n_tokens; i++) {
                    for (int64_t r = 0; r < s.rows; r++) {
                        double mag = 0.0;
                        for (int64_t c = 0; c < s.cols; c++)
                            mag += std::fabs((double)wf[r * s.cols + c] * x[i * s.cols + c]);
                        ASSERT_NEAR(got[i * s.rows + r], want[i * s.rows + r], tol * mag + 1e-6)
                            << "token " << i << " row " << r;
                    }
                }
            }
        }
    }
}

// Y = X W for W (n_in, n_out) row-major (a transposed weight) against a double reference over the dequantized rows,
// same tolerances as above. The workspace holds 7 rows of n_out, so quantized weights go through several slabs of
// inputs (each added to Y), the last one partial.
TEST_F(Cublas, MatmulByRowsMatchesReferenceEveryType) {
    for (DType t : kAllTypes) {
        for (const Shape s : {Shape{50, 64}, Shape{333, 4096}, Shape{1100, 96}}) {  // (n_in, n_out)
            for (int64_t n_tokens : {1, 17, 32}) {
                SCOPED_TRACE(std::string(dtype_name(t)) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                             " tokens=" + std::to_string(n_tokens));
                const auto w = quantize_matrix(t, randn((size_t)s.rows * s.cols, 0.5f, 71), s.rows, s.cols);
                const auto wf = dequantize_matrix(t, w, s.rows, s.cols);
                const std::vector<float> x = randn((size_t)n_tokens * s.rows, 1.0f, 72);
                gpu::GemmWorkspace ws;
                ws.handle = handle_;
                ws.bytes = gpu::matmul_workspace_bytes(t, n_tokens, s.rows, 0) + (size_t)7 * s.cols * 2;
                DeviceMem dws(ws.bytes), dw(w), dx(x), dy((size_t)n_tokens * s.cols * sizeof(float));
                ws.ptr = dws.as();
                gpu::matmul_by_rows(t, dw.as(), dx.as<float>(), dy.as<float>(), n_tokens, s.rows, s.cols, ws, nullptr);
                const auto got = dy.to_host<float>();
                const double tol = t == DType::DTYPE_F32 ? 1e-5 : t == DType::DTYPE_BF16 ? 1.6e-2 : 2e-3;
                for (int64_t i = 0; i < n_tokens; i++) {
                    for (int64_t o = 0; o < s.cols; o++) {
                        double want = 0.0, mag = 0.0;
                        for (int64_t r = 0; r < s.rows; r++) {
                            want += (double)x[i * s.rows + r] * wf[r * s.cols + o];
                            mag += std::fabs((double)x[i * s.rows + r] * wf[r * s.cols + o]);
                        }
                        ASSERT_NEAR(got[i * s.cols + o], want, tol * mag + 1e-6) << "token " << i << " output " << o;
                    }
                }
            }
        }
    }
    gpu::GemmWorkspace small;
    small.handle = handle_;
    small.bytes = gpu::matmul_workspace_bytes(DType::DTYPE_Q4_0, 4, 64, 0) + 64 * 2 - 1;
    DeviceMem dsmall(small.bytes);
    small.ptr = dsmall.as();
    EXPECT_THROW(gpu::matmul_by_rows(DType::DTYPE_Q4_0, nullptr, nullptr, nullptr, 4, 64, 64, small, nullptr), Error);
}

TEST_F(Cublas, MatmulRejectsSmallWorkspace) {
    gpu::GemmWorkspace ws;
    ws.handle = handle_;
    ws.bytes = gpu::matmul_workspace_bytes(DType::DTYPE_Q8_0, 4, 64, 1) - 1;
    DeviceMem dws(ws.bytes);
    ws.ptr = dws.as();
    EXPECT_THROW(gpu::matmul(DType::DTYPE_Q8_0, nullptr, nullptr, nullptr, 4, 8, 64, ws, nullptr), Error);
}

}  // namespace
}  // namespace ember::gpu_test
