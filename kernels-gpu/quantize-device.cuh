// Device-side Q8_0 quantization of activations, shared by dot_prepare_vec and the kernels that prepare their output
// for the next matvec themselves (the fused RMSNorm, the predictor's ReLU).
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels-cpu/dtype.h"

namespace ember::gpu {

// A Q8_0 block's scale from its largest magnitude, the factor from values to quants, and a quant: as kernels-cpu's
// quantize_row for Q8_0 (d = amax / 127, q = roundf(v / d) through the reciprocal), so the same quants and scale.
__device__ __forceinline__ float q8_scale(float amax) { return amax / 127.0f; }
__device__ __forceinline__ float q8_inverse(float scale) { return scale != 0.0f ? 1.0f / scale : 0.0f; }
__device__ __forceinline__ int q8_quant(float v, float inverse) { return (int)roundf(v * inverse); }
// The scale as stored: rounded to fp16, kept as a float.
__device__ __forceinline__ float q8_stored_scale(float scale) { return __half2float(__float2half_rn(scale)); }

// One 32-element block of a warp, lane i holding element i. q: the block's 32 quants; d: its scale, stored as a
// float. Every lane of the warp takes part.
__device__ __forceinline__ void quantize_q8_block_warp(float v, int lane, int8_t* __restrict__ q, float* __restrict__ d) {
    float amax = fabsf(v);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float scale = q8_scale(amax);
    q[lane] = (int8_t)q8_quant(v, q8_inverse(scale));
    if (lane == 0) *d = q8_stored_scale(scale);
}

}  // namespace ember::gpu
