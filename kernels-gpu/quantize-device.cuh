// Device-side Q8_0 quantization of activations, shared by dot_prepare_vec and the kernels that prepare their output
// for the next matvec themselves (the fused RMSNorm, the predictor's ReLU).
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels-cpu/dtype.h"

namespace ember::gpu {

// One 32-element block of a warp, lane i holding element i: as kernels-cpu's quantize_row for Q8_0 (d = amax / 127,
// q = roundf(v / d) through the reciprocal, d rounded to fp16), so the same quants and scale. q: the block's 32
// quants; d: its scale, stored as a float. Every lane of the warp takes part.
__device__ __forceinline__ void quantize_q8_block_warp(float v, int lane, int8_t* __restrict__ q, float* __restrict__ d) {
    float amax = fabsf(v);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float scale = amax / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    q[lane] = (int8_t)roundf(v * inv);
    if (lane == 0) *d = __half2float(__float2half_rn(scale));
}

}  // namespace ember::gpu
