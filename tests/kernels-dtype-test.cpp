// dtype.h: names, block sizes, and the fp16/bf16 conversions checked exhaustively or against a brute-force
// nearest-value search (round to nearest, ties to even).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels-cpu/dtype.h"

namespace ember {
namespace {

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Independent decoding of binary16 by its definition.
double half_value(uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    const double v = e == 0 ? std::ldexp((double)m, -24) : std::ldexp(1.0 + m / 1024.0, e - 15);
    return s ? -v : v;
}

// Round-to-nearest-even binary16 by search: the largest finite half <= |f| and its successor.
uint16_t half_nearest(float f) {
    const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
    const double a = std::fabs((double)f);
    if (a >= 65520.0) return sign | 0x7c00;
    uint16_t lo = 0, hi = 0x7bff;  // positive finite halves are ordered like their bits
    while (lo < hi) {
        const uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
        if (half_value(mid) <= a) lo = mid; else hi = (uint16_t)(mid - 1);
    }
    const uint16_t up = (uint16_t)(lo + 1);  // 0x7c00 (inf) when lo is 65504: then a < 65520 picks lo
    const double dl = a - half_value(lo), du = (up == 0x7c00 ? 65536.0 : half_value(up)) - a;
    if (dl < du || (dl == du && (lo & 1) == 0)) return sign | lo;
    return sign | up;
}

uint16_t bf16_nearest(float f) {
    const uint32_t u = bits(f);
    const uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    // above the largest finite bf16 the next pattern is inf, which rounding treats as 2^128
    const auto value = [](uint32_t p) {
        return (p & 0x7fffffffu) == 0x7f800000u ? std::copysign(std::ldexp(1.0, 128), (double)from_bits(p))
                                                : (double)from_bits(p);
    };
    const double dl = std::fabs((double)f - value(lo));
    const double dh = std::fabs(value(hi) - (double)f);
    if (dl < dh || (dl == dh && ((lo >> 16) & 1) == 0)) return (uint16_t)(lo >> 16);
    return (uint16_t)(hi >> 16);
}

TEST(KernelsDtype, NamesAndBlocks) {
    EXPECT_STREQ(dtype_name(DType::DTYPE_F32), "f32");
    EXPECT_STREQ(dtype_name(DType::DTYPE_F16), "f16");
    EXPECT_STREQ(dtype_name(DType::DTYPE_BF16), "bf16");
    EXPECT_STREQ(dtype_name(DType::DTYPE_Q8_0), "q8_0");
    EXPECT_STREQ(dtype_name(DType::DTYPE_Q4_0), "q4_0");
    EXPECT_EQ(dtype_block_elems(DType::DTYPE_F16), 1);
    EXPECT_EQ(dtype_block_elems(DType::DTYPE_Q4_0), 32);
    EXPECT_EQ(dtype_block_bytes(DType::DTYPE_F32), 4u);
    EXPECT_EQ(dtype_block_bytes(DType::DTYPE_BF16), 2u);
    EXPECT_EQ(dtype_block_bytes(DType::DTYPE_Q8_0), 34u);
    EXPECT_EQ(dtype_block_bytes(DType::DTYPE_Q4_0), 18u);
    EXPECT_EQ(dtype_row_bytes(DType::DTYPE_Q4_0, 4096), 128u * 18u);
    EXPECT_EQ(dtype_row_bytes(DType::DTYPE_F16, 7), 14u);
    for (uint32_t t : {0u, 1u, 2u, 8u, 30u}) EXPECT_TRUE(dtype_is_supported(t)) << t;
    for (uint32_t t : {3u, 6u, 7u, 9u, 12u, 29u, 31u, 1000u}) EXPECT_FALSE(dtype_is_supported(t)) << t;
    EXPECT_THROW(dtype_name((DType)3), std::invalid_argument);
    EXPECT_THROW(dtype_block_bytes((DType)12), std::invalid_argument);
}

TEST(KernelsDtype, Fp16ToF32AllValues) {
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = fp16_to_f32((uint16_t)h);
        const int e = (h >> 10) & 31, m = h & 1023;
        if (e == 31 && m != 0) {
            EXPECT_TRUE(std::isnan(f)) << h;
            EXPECT_EQ(f32_to_fp16(f), h | 0x200) << h;  // NaN stays NaN, made quiet, payload kept
            continue;
        }
        if (e == 31) {
            EXPECT_TRUE(std::isinf(f)) << h;
        } else {
            EXPECT_EQ((double)f, half_value((uint16_t)h)) << h;
        }
        EXPECT_EQ(std::signbit(f), (h & 0x8000) != 0) << h;
        EXPECT_EQ(f32_to_fp16(f), h) << h;  // every half round-trips
    }
}

TEST(KernelsDtype, F32ToFp16RoundsToNearestEven) {
    std::vector<float> xs = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e9f, -1e30f,
                             std::ldexp(1.0f, -24), std::ldexp(1.0f, -25), std::ldexp(1.0f, -25) * 1.0000001f,
                             std::ldexp(3.0f, -26), std::ldexp(5.0f, -26), std::ldexp(1.0f, -14),
                             std::ldexp(1023.5f, -24), std::ldexp(2047.0f, -25), std::ldexp(1.0f, -30),
                             1.0f + std::ldexp(1.0f, -11), 1.0f + std::ldexp(3.0f, -11), 1e-40f, -1e-40f};
    // every midpoint between adjacent halves, and its float neighbours
    for (uint32_t h = 0; h < 0x7bff; h += 7) {
        const float mid = (float)((half_value((uint16_t)h) + half_value((uint16_t)(h + 1))) / 2);
        xs.push_back(mid);
        xs.push_back(std::nextafter(mid, 0.0f));
        xs.push_back(std::nextafter(mid, 1e9f));
        xs.push_back(-mid);
    }
    std::mt19937 rng(1234);
    std::uniform_real_distribution<float> ex(-30.0f, 17.0f);
    std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
    for (int i = 0; i < 200000; i++) xs.push_back(mant(rng) * std::exp2(ex(rng)));
    for (float f : xs) ASSERT_EQ(f32_to_fp16(f), half_nearest(f)) << f;
    EXPECT_EQ(f32_to_fp16(INFINITY), 0x7c00);
    EXPECT_EQ(f32_to_fp16(-INFINITY), 0xfc00);
    EXPECT_TRUE(std::isnan(fp16_to_f32(f32_to_fp16(NAN))));
    EXPECT_TRUE(std::isnan(fp16_to_f32(f32_to_fp16(from_bits(0x7f800001u)))));  // tiny payload stays NaN
}

TEST(KernelsDtype, Bf16) {
    std::mt19937 rng(99);
    std::vector<float> xs = {0.0f, -0.0f, 1.0f, 3.0e38f, 3.3961e38f, -3.4e38f, 1e-39f, -1e-42f, 1.00390625f,
                             1.01171875f, from_bits(0x3f808000u), from_bits(0x3f818000u), from_bits(0x7f7f8000u)};
    for (int i = 0; i < 200000; i++) {
        const uint32_t u = rng();
        if ((u & 0x7f800000u) != 0x7f800000u) xs.push_back(from_bits(u));  // all finite patterns
    }
    for (float f : xs) {
        const uint16_t b = f32_to_bf16(f);
        ASSERT_EQ(b, bf16_nearest(f)) << f;
        if (bits(f) == (uint32_t)b << 16) {
            EXPECT_EQ(bf16_to_f32(b), f);
        }
    }
    EXPECT_EQ(f32_to_bf16(INFINITY), 0x7f80);
    EXPECT_EQ(f32_to_bf16(-INFINITY), 0xff80);
    for (uint32_t nan : {0x7f800001u, 0x7fc00000u, 0xff800100u, 0x7fffffffu}) {
        const uint16_t b = f32_to_bf16(from_bits(nan));
        EXPECT_TRUE(std::isnan(bf16_to_f32(b))) << std::hex << nan;
        EXPECT_TRUE(b & 0x40) << std::hex << nan;  // quiet
        EXPECT_EQ(b & 0x8000, (nan >> 16) & 0x8000);
    }
}

}  // namespace
}  // namespace ember
