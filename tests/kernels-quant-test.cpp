// quant.h: quantizers equal a plain reimplementation of llama.cpp's reference formulas byte for byte,
// round trips stay within each type's error bound, every SIMD level's (de)quantizer equals the scalar one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/quant.h"

namespace ember {
namespace {

const DType kTypes[] = {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_BF16, DType::DTYPE_Q8_0,
                        DType::DTYPE_Q4_0};

// Inputs that exercise the corner cases: normal values, a zero block, a block of one sign, exact .5 ties
// (block max 127 -> d = 1, id = 1, so x * id lands on k + 0.5), tiny and large magnitudes.
std::vector<float> test_input(int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x((size_t)n);
    for (auto& v : x) v = nd(rng);
    for (int64_t b = 0; b < n / 32; b++) {
        float* xb = x.data() + b * 32;
        switch (b % 8) {
            case 1: std::fill(xb, xb + 32, 0.0f); break;
            case 2:
                for (int j = 0; j < 32; j++) xb[j] = (float)(j % 7) + 0.5f * (j & 1) - 3.0f;  // ties
                xb[5] = 127.0f;
                break;
            case 3:
                for (int j = 0; j < 32; j++) xb[j] = std::fabs(xb[j]) * 1e-6f;
                break;
            case 4:
                for (int j = 0; j < 32; j++) xb[j] *= 3000.0f;
                break;
            case 5:
                for (int j = 0; j < 32; j++) xb[j] = -std::fabs(xb[j]);  // max-magnitude value negative
                break;
            default: break;
        }
    }
    return x;
}

// Straightforward scalar versions of llama.cpp's quantize_row_q8_0_ref / quantize_row_q4_0_ref formulas.
std::vector<block_q8_0> plain_q8_0(const std::vector<float>& x) {
    std::vector<block_q8_0> y(x.size() / 32);
    for (size_t b = 0; b < y.size(); b++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = std::max(amax, std::fabs(x[b * 32 + j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[b].d = f32_to_fp16(d);
        for (int j = 0; j < 32; j++) y[b].qs[j] = (int8_t)std::round(x[b * 32 + j] * id);
    }
    return y;
}

std::vector<block_q4_0> plain_q4_0(const std::vector<float>& x) {
    std::vector<block_q4_0> y(x.size() / 32);
    for (size_t b = 0; b < y.size(); b++) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (std::fabs(x[b * 32 + j]) > amax) {
                amax = std::fabs(x[b * 32 + j]);
                max = x[b * 32 + j];
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[b].d = f32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            volatile float p0 = x[b * 32 + j] * id, p1 = x[b * 32 + 16 + j] * id;  // no FMA with the + 8.5f
            const uint8_t q0 = (uint8_t)std::min(15, (int)(int8_t)(p0 + 8.5f));
            const uint8_t q1 = (uint8_t)std::min(15, (int)(int8_t)(p1 + 8.5f));
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
    return y;
}

std::vector<const DotKernels*> levels() {
    std::vector<const DotKernels*> out;
    for (const char* l : {"scalar", "avx2", "avx512", "avx512vnni"}) {
        if (const DotKernels* k = dot_kernels_for(l)) out.push_back(k);
    }
    return out;
}

TEST(KernelsQuant, Q8_0MatchesReferenceFormula) {
    for (int64_t n : {32, 96, 256, 4096}) {
        const auto x = test_input(n, (uint32_t)n);
        std::vector<block_q8_0> y(n / 32);
        quantize_row(DType::DTYPE_Q8_0, x.data(), y.data(), n);
        const auto want = plain_q8_0(x);
        ASSERT_EQ(std::memcmp(y.data(), want.data(), y.size() * sizeof(block_q8_0)), 0) << n;
        // The tie block (d = 1): halves round away from zero, as roundf does.
        if (n >= 96) {
            const block_q8_0& tb = y[2];
            EXPECT_EQ(fp16_to_f32(tb.d), 1.0f);
            EXPECT_EQ(tb.qs[3], 1);   // x = 3 + 0.5 - 3 = 0.5
            EXPECT_EQ(tb.qs[1], -2);  // x = 1 + 0.5 - 3 = -1.5
        }
    }
}

TEST(KernelsQuant, Q4_0MatchesReferenceFormula) {
    for (int64_t n : {32, 96, 256, 4096}) {
        const auto x = test_input(n, (uint32_t)n + 7);
        std::vector<block_q4_0> y(n / 32);
        quantize_row(DType::DTYPE_Q4_0, x.data(), y.data(), n);
        const auto want = plain_q4_0(x);
        ASSERT_EQ(std::memcmp(y.data(), want.data(), y.size() * sizeof(block_q4_0)), 0) << n;
    }
}

// Round trip bounds. Q8_0: |x - x'| <= d/2 plus the fp16 rounding of d times |q| <= 127.
// Q4_0: <= d (the value at +8 d clamps to 7 d) plus 8 times the fp16 rounding of d.
TEST(KernelsQuant, RoundTripErrorBounds) {
    const int64_t n = 4096;
    const auto x = test_input(n, 5);
    for (DType t : kTypes) {
        std::vector<uint8_t> q(dtype_row_bytes(t, n));
        std::vector<float> back((size_t)n);
        quantize_row(t, x.data(), q.data(), n);
        dequantize_row(t, q.data(), back.data(), n);
        for (int64_t b = 0; b < n / 32; b++) {
            float amax = 0.0f, max = 0.0f;
            for (int j = 0; j < 32; j++) {
                if (std::fabs(x[b * 32 + j]) > amax) {
                    amax = std::fabs(x[b * 32 + j]);
                    max = x[b * 32 + j];
                }
            }
            for (int j = 0; j < 32; j++) {
                const int64_t i = b * 32 + j;
                const float err = std::fabs(back[i] - x[i]);
                switch (t) {
                    case DType::DTYPE_F32: ASSERT_EQ(back[i], x[i]); break;
                    case DType::DTYPE_F16: ASSERT_LE(err, 1e-3f * std::fabs(x[i]) + 6e-8f) << i; break;
                    case DType::DTYPE_BF16: ASSERT_LE(err, 1e-2f * std::fabs(x[i])) << i; break;
                    case DType::DTYPE_Q8_0: {
                        const float d = amax / 127, d16 = fp16_to_f32(f32_to_fp16(d));
                        ASSERT_LE(err, d / 2 + 127 * std::fabs(d16 - d) + 1e-6f * amax) << i;
                        break;
                    }
                    case DType::DTYPE_Q4_0: {
                        const float d = std::fabs(max / -8), d16 = std::fabs(fp16_to_f32(f32_to_fp16(d)));
                        ASSERT_LE(err, d + 8 * std::fabs(d16 - d) + 1e-6f * amax) << i;
                        break;
                    }
                }
            }
        }
    }
}

TEST(KernelsQuant, TiesRoundAwayFromZero) {
    std::vector<float> x(32, 0.0f);
    x[0] = 127.0f;  // d = 1
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 0.5f;
    x[4] = -0.5f;
    x[5] = 126.5f;
    for (const DotKernels* k : levels()) {
        block_q8_0 y;
        k->quantize_row_q8_0(x.data(), &y, 32);
        EXPECT_EQ(fp16_to_f32(y.d), 1.0f) << k->name;
        EXPECT_EQ(y.qs[1], 3) << k->name;
        EXPECT_EQ(y.qs[2], -3) << k->name;
        EXPECT_EQ(y.qs[3], 1) << k->name;
        EXPECT_EQ(y.qs[4], -1) << k->name;
        EXPECT_EQ(y.qs[5], 127) << k->name;
    }
}

TEST(KernelsQuant, SimdQuantizeQ8_0EqualsScalar) {
    for (int64_t n : {32, 64, 96, 4096, 11008}) {
        for (uint32_t seed = 0; seed < 4; seed++) {
            auto x = test_input(n, seed * 31 + (uint32_t)n);
            std::vector<block_q8_0> want(n / 32), got(n / 32);
            quantize_row(DType::DTYPE_Q8_0, x.data(), want.data(), n);
            for (const DotKernels* k : levels()) {
                std::memset(got.data(), 0x5a, got.size() * sizeof(block_q8_0));
                k->quantize_row_q8_0(x.data(), got.data(), n);
                ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(block_q8_0)), 0)
                    << k->name << " n=" << n;
            }
        }
    }
}

TEST(KernelsQuant, SimdDequantizeEqualsScalar) {
    for (DType t : kTypes) {
        for (int64_t n : {32, 96, 4096, 4128}) {
            const auto x = test_input(n, 3);
            std::vector<uint8_t> q(dtype_row_bytes(t, n));
            quantize_row(t, x.data(), q.data(), n);
            std::vector<float> want((size_t)n), got((size_t)n);
            dot_kernels_portable()->dequantize_row(t, q.data(), want.data(), n);
            for (const DotKernels* k : levels()) {
                std::fill(got.begin(), got.end(), -1.0f);
                k->dequantize_row(t, q.data(), got.data(), n);
                ASSERT_EQ(std::memcmp(got.data(), want.data(), (size_t)n * 4), 0) << k->name << " " << dtype_name(t);
            }
        }
    }
    // F16/BF16 rows of any length (tails)
    for (int64_t n : {1, 7, 15, 17, 33}) {
        std::vector<uint16_t> h((size_t)n);
        for (int64_t i = 0; i < n; i++) h[i] = (uint16_t)(0x3c00 + i * 977);
        for (DType t : {DType::DTYPE_F16, DType::DTYPE_BF16}) {
            std::vector<float> want((size_t)n), got((size_t)n + 1, 42.0f);
            dot_kernels_portable()->dequantize_row(t, h.data(), want.data(), n);
            for (const DotKernels* k : levels()) {
                k->dequantize_row(t, h.data(), got.data(), n);
                ASSERT_EQ(std::memcmp(got.data(), want.data(), (size_t)n * 4), 0) << k->name;
                ASSERT_EQ(got[n], 42.0f) << "wrote past the row";
            }
        }
    }
}

TEST(KernelsQuant, RejectsPartialBlocks) {
    std::vector<float> x(48, 1.0f);
    std::vector<uint8_t> y(256);
    EXPECT_THROW(quantize_row(DType::DTYPE_Q8_0, x.data(), y.data(), 48), std::invalid_argument);
    EXPECT_THROW(dequantize_row(DType::DTYPE_Q4_0, y.data(), x.data(), 40), std::invalid_argument);
    EXPECT_THROW(quantize_row((DType)6, x.data(), y.data(), 32), std::invalid_argument);
    EXPECT_NO_THROW(quantize_row(DType::DTYPE_F16, x.data(), y.data(), 7));
}

}  // namespace
}  // namespace ember
