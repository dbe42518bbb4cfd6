// Device-side dot products of one weight row with a prepared activation vector (layout in kernels-gpu/dot.h),
// spread over a group of G threads; shared by matvec and sparse_gate_up.
#pragma once
#include "kernels-gpu/dtype-device.cuh"

namespace ember::gpu {

__host__ __device__ constexpr bool dtype_is_quant(DType t) { return t == DType::DTYPE_Q8_0 || t == DType::DTYPE_Q4_0; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// One unit (8 elements at c, c % 8 == 0) of a Q8_0/Q4_0 row against Q8 activations: an integer sum of 8 products
// (two dp4a), scaled by d_w * d_x as kernels-cpu's dot_quant scales a block.
template <DType T>
__device__ __forceinline__ float unit_dot_q8(const uint8_t* __restrict__ row, const int8_t* __restrict__ xqs,
                                             const float* __restrict__ xd, int64_t c) {
    const int e = (int)(c % QK8_0);  // QK8_0 == QK4_0
    const int2 xv = *reinterpret_cast<const int2*>(xqs + c);
    int w0, w1;
    float dw;
    if constexpr (T == DType::DTYPE_Q8_0) {
        const uint8_t* blk = row + (c / QK8_0) * sizeof(block_q8_0);
        dw = fp16_bits_to_f32(*reinterpret_cast<const uint16_t*>(blk));
        w0 = load_int_a2(blk + 2 + e);
        w1 = load_int_a2(blk + 6 + e);
    } else {
        // Elements 0..15 are the low nibbles of bytes 0..15, elements 16..31 their high nibbles; value = nibble - 8.
        const uint8_t* blk = row + (c / QK4_0) * sizeof(block_q4_0);
        dw = fp16_bits_to_f32(*reinterpret_cast<const uint16_t*>(blk));
        const int shift = e < 16 ? 0 : 4;
        const unsigned n0 = ((unsigned)load_int_a2(blk + 2 + e % 16) >> shift) & 0x0f0f0f0fu;
        const unsigned n1 = ((unsigned)load_int_a2(blk + 6 + e % 16) >> shift) & 0x0f0f0f0fu;
        w0 = (int)__vsub4(n0, 0x08080808u);  // per byte, wrapping: the signed int8 nibble - 8
        w1 = (int)__vsub4(n1, 0x08080808u);
    }
    const int isum = __dp4a(w1, xv.y, __dp4a(w0, xv.x, 0));
    return dw * xd[c / QK8_0] * (float)isum;
}

// Partial dot of row (n elements of type T) with prepared xq, over the units g, g + G, g + 2G, ...; the G partial
// sums add up to the row's dot product. U: 8 (units; n % 8 == 0, float rows and x 16-byte aligned) or 1 (F32, F16,
// BF16 only).
template <DType T, int U, int G>
__device__ __forceinline__ float row_dot_partial(const uint8_t* __restrict__ row, const void* __restrict__ xq,
                                                 int64_t n, int g) {
    float acc = 0.0f;
    const int64_t n_units = n / U;
    if constexpr (dtype_is_quant(T)) {
        static_assert(U == kUnit, "quantized rows are read by units");
        const int8_t* xqs = static_cast<const int8_t*>(xq);
        const float* xd = reinterpret_cast<const float*>(static_cast<const uint8_t*>(xq) + n);
#pragma unroll 4
        for (int64_t u = g; u < n_units; u += G) acc += unit_dot_q8<T>(row, xqs, xd, u * U);
    } else {
        const float* x = static_cast<const float*>(xq);
#pragma unroll 4
        for (int64_t u = g; u < n_units; u += G) {
            float v[U];
            load_elems<T, U>(row, u * U, v);
            if constexpr (U == 1) {
                acc += v[0] * x[u];
            } else {
                const float4* xp = reinterpret_cast<const float4*>(x + u * U);
                const float4 a = xp[0], b = xp[1];
                acc += v[0] * a.x + v[1] * a.y + v[2] * a.z + v[3] * a.w;
                acc += v[4] * b.x + v[5] * b.y + v[6] * b.z + v[7] * b.w;
            }
        }
    }
    return acc;
}

}  // namespace ember::gpu
