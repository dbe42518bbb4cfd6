// Device-side element access for every weight type, shared by the GEMV, sparse FFN and dequantize kernels.
// The unit of work is 8 consecutive elements of one row ("a unit"): 16 bytes of F16/BF16, 32 of F32, a quarter of a
// Q8_0/Q4_0 block. Dequantized values equal kernels-cpu's dequantize_row bit for bit (one float multiply each).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels-cpu/dtype.h"

namespace ember::gpu {

constexpr int kUnit = 8;  // elements per unit

__device__ __forceinline__ float fp16_bits_to_f32(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

// 4 bytes starting at a 2-byte aligned address (quant blocks are 34 or 18 bytes, so their quants are only 2-aligned).
__device__ __forceinline__ int load_int_a2(const uint8_t* p) {
    const uint16_t* q = reinterpret_cast<const uint16_t*>(p);
    return (int)((uint32_t)q[0] | ((uint32_t)q[1] << 16));
}

// v[e] = element c + e of a row of type T, for e in [0, U). U == 8 (a unit; c % 8 == 0, F32/F16/BF16 rows
// 16-byte aligned at c) or U == 1 (F32/F16/BF16 only, any c and alignment).
template <DType T, int U>
__device__ __forceinline__ void load_elems(const uint8_t* __restrict__ row, int64_t c, float* v) {
    if constexpr (U == 1) {
        if constexpr (T == DType::DTYPE_F32) v[0] = reinterpret_cast<const float*>(row)[c];
        if constexpr (T == DType::DTYPE_F16) v[0] = fp16_bits_to_f32(reinterpret_cast<const uint16_t*>(row)[c]);
        if constexpr (T == DType::DTYPE_BF16) v[0] = bf16_bits_to_f32(reinterpret_cast<const uint16_t*>(row)[c]);
    } else if constexpr (T == DType::DTYPE_F32) {
        const float4* p = reinterpret_cast<const float4*>(row + c * 4);
        const float4 a = p[0], b = p[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else if constexpr (T == DType::DTYPE_F16 || T == DType::DTYPE_BF16) {
        const uint4 u = *reinterpret_cast<const uint4*>(row + c * 2);
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {  // element 2i in the low half of word i (little-endian)
            if constexpr (T == DType::DTYPE_F16) {
                v[2 * i] = fp16_bits_to_f32((uint16_t)(w[i] & 0xffff));
                v[2 * i + 1] = fp16_bits_to_f32((uint16_t)(w[i] >> 16));
            } else {
                v[2 * i] = __uint_as_float(w[i] << 16);
                v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
            }
        }
    } else if constexpr (T == DType::DTYPE_Q8_0) {
        const uint8_t* blk = row + (c / QK8_0) * sizeof(block_q8_0);
        const float d = fp16_bits_to_f32(*reinterpret_cast<const uint16_t*>(blk));
        const uint16_t* q = reinterpret_cast<const uint16_t*>(blk + 2 + c % QK8_0);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = (float)(int8_t)(q[i] & 0xff) * d;
            v[2 * i + 1] = (float)(int8_t)(q[i] >> 8) * d;
        }
    } else if constexpr (T == DType::DTYPE_Q4_0) {
        // Elements 0..15 of a block are the low nibbles of bytes 0..15, elements 16..31 their high nibbles.
        const int e = (int)(c % QK4_0);
        const uint8_t* blk = row + (c / QK4_0) * sizeof(block_q4_0);
        const float d = fp16_bits_to_f32(*reinterpret_cast<const uint16_t*>(blk));
        const uint16_t* q = reinterpret_cast<const uint16_t*>(blk + 2 + e % 16);
        const int shift = e < 16 ? 0 : 4;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = (float)((int)((q[i] >> shift) & 15) - 8) * d;
            v[2 * i + 1] = (float)((int)((q[i] >> (8 + shift)) & 15) - 8) * d;
        }
    }
}

}  // namespace ember::gpu
