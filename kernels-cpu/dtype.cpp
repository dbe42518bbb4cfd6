// Type names, block sizes and the scalar float conversions (IEEE 754 binary16 and bfloat16).
#include "kernels-cpu/dtype.h"

#include <stdexcept>
#include <string>

namespace ember {

namespace {

uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

[[noreturn]] void throw_unknown(const char* fn, DType t) {
    throw std::invalid_argument(std::string(fn) + ": unknown dtype " + std::to_string((uint32_t)t) +
                                ", expected one of f32(0), f16(1), q4_0(2), q8_0(8), bf16(30)");
}

}  // namespace

bool dtype_is_supported(uint32_t ggml_type) {
    switch ((DType)ggml_type) {
        case DType::DTYPE_F32:
        case DType::DTYPE_F16:
        case DType::DTYPE_Q4_0:
        case DType::DTYPE_Q8_0:
        case DType::DTYPE_BF16:
            return true;
    }
    return false;
}

const char* dtype_name(DType t) {
    switch (t) {
        case DType::DTYPE_F32: return "f32";
        case DType::DTYPE_F16: return "f16";
        case DType::DTYPE_Q4_0: return "q4_0";
        case DType::DTYPE_Q8_0: return "q8_0";
        case DType::DTYPE_BF16: return "bf16";
    }
    throw_unknown("dtype_name", t);
}

int dtype_block_elems(DType t) {
    switch (t) {
        case DType::DTYPE_F32:
        case DType::DTYPE_F16:
        case DType::DTYPE_BF16: return 1;
        case DType::DTYPE_Q4_0: return QK4_0;
        case DType::DTYPE_Q8_0: return QK8_0;
    }
    throw_unknown("dtype_block_elems", t);
}

size_t dtype_block_bytes(DType t) {
    switch (t) {
        case DType::DTYPE_F32: return 4;
        case DType::DTYPE_F16:
        case DType::DTYPE_BF16: return 2;
        case DType::DTYPE_Q4_0: return sizeof(block_q4_0);
        case DType::DTYPE_Q8_0: return sizeof(block_q8_0);
    }
    throw_unknown("dtype_block_bytes", t);
}

// binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Exact: every half is a float.
float fp16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) {  // inf; NaN keeps its payload and is made quiet, as F16C's vcvtph2ps does
        return bits_f32(sign | 0x7f800000 | (mant << 13) | (mant ? 0x400000 : 0));
    }
    if (exp != 0) return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0) return bits_f32(sign);
    // Subnormal: mant * 2^-24, exact in float.
    const float v = (float)mant * (1.0f / 16777216.0f);
    return sign ? -v : v;
}

// Round to nearest, ties to even, as F16C's vcvtps2ph with imm 0 does.
uint16_t f32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffff;
    if (x >= 0x7f800000) {  // inf, NaN: NaN stays NaN (quiet bit set, top payload bits kept)
        return x == 0x7f800000 ? (uint16_t)(sign | 0x7c00) : (uint16_t)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
    }
    if (x >= 0x477ff000) return sign | 0x7c00;  // >= 65520 rounds to inf
    if (x >= 0x38800000) {                      // normal half (>= 2^-14): rebias, round the 13 dropped bits
        const uint32_t y = x - 0x38000000;
        return (uint16_t)(sign | ((y + 0xfff + ((y >> 13) & 1)) >> 13));
    }
    if (x <= 0x33000000) return sign;  // <= 2^-25 (half of the smallest subnormal): ties to even -> 0
    // Subnormal half: value / 2^-24 = m * 2^(e-126) with m the 24-bit significand, shift 14..24.
    const uint32_t e = x >> 23;
    const uint32_t m = (x & 0x7fffff) | 0x800000;
    const uint32_t s = 126 - e;
    uint32_t r = m >> s;
    const uint32_t rem = m & ((1u << s) - 1);
    const uint32_t half = 1u << (s - 1);
    if (rem > half || (rem == half && (r & 1))) r++;  // may carry into the smallest normal, which is right
    return (uint16_t)(sign | r);
}

uint16_t f32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);  // NaN: keep it, force quiet
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

}  // namespace ember
