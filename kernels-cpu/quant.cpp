// Row quantizers and dequantizers. The quantizers follow llama.cpp's reference ones (ggml-quants.c,
// quantize_row_q8_0_ref / quantize_row_q4_0_ref): same formulas, same float operations, so the same bits.
#include "kernels-cpu/quant.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels-cpu/dot-isa.h"

namespace ember {

namespace {

void check_row(const char* fn, DType t, int64_t n) {
    const int be = dtype_block_elems(t);  // throws on an unknown type
    if (n < 0 || n % be != 0) {
        throw std::invalid_argument(std::string(fn) + ": row of " + std::to_string(n) + " " + dtype_name(t) +
                                    " elements, expected a non-negative multiple of " + std::to_string(be));
    }
}

// Q8_0: d = amax / 127, q = roundf(x * (1/d)) (half away from zero), d stored as fp16.
void quantize_q8_0(const float* x, block_q8_0* y, int64_t n) {
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float* xb = x + i * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) {
            const float a = std::fabs(xb[j]);
            amax = amax > a ? amax : a;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)std::roundf(xb[j] * id);
    }
}

// Q4_0: d = (the value of largest magnitude, with its sign) / -8, q = min(15, trunc(x * (1/d) + 8.5)),
// element j in the low nibble of byte j, element j + 16 in its high nibble.
void quantize_q4_0(const float* x, block_q4_0* y, int64_t n) {
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float* xb = x + i * QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++) {
            if (amax < std::fabs(xb[j])) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            float x0 = xb[j] * id, x1 = xb[j + QK4_0 / 2] * id;
            EMBER_NO_CONTRACT(x0);  // the reference rounds the product before adding 8.5 (no FMA)
            EMBER_NO_CONTRACT(x1);
            const int q0 = (int)(int8_t)(x0 + 8.5f);
            const int q1 = (int)(int8_t)(x1 + 8.5f);
            y[i].qs[j] = (uint8_t)((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
        }
    }
}

}  // namespace

void quantize_row(DType t, const float* x, void* y, int64_t n) {
    check_row("quantize_row", t, n);
    switch (t) {
        case DType::DTYPE_F32: std::memcpy(y, x, (size_t)n * 4); return;
        case DType::DTYPE_F16: {
            uint16_t* o = (uint16_t*)y;
            for (int64_t i = 0; i < n; i++) o[i] = f32_to_fp16(x[i]);
            return;
        }
        case DType::DTYPE_BF16: {
            uint16_t* o = (uint16_t*)y;
            for (int64_t i = 0; i < n; i++) o[i] = f32_to_bf16(x[i]);
            return;
        }
        case DType::DTYPE_Q8_0: quantize_q8_0(x, (block_q8_0*)y, n); return;
        case DType::DTYPE_Q4_0: quantize_q4_0(x, (block_q4_0*)y, n); return;
    }
}

// The SIMD tables give the same bits as the scalar loops (exact conversions, one multiply per element);
// the scalar version is the portable table's and is tested against the others.
void dequantize_row(DType t, const void* x, float* y, int64_t n) {
    check_row("dequantize_row", t, n);
    dot_kernels()->dequantize_row(t, x, y, n);
}

}  // namespace ember
