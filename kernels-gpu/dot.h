// Activation vectors prepared for the GPU dot products; mirrors kernels-cpu/dot.h. Pointers are device memory.
// As on the CPU, F32/F16/BF16 weights take F32 activations and Q8_0/Q4_0 weights take Q8_0-quantized ones, with the
// same quantizer bits (d = amax / 127, q = roundf(x / d), d rounded to fp16). The GPU layout differs so that every
// load is aligned: n int8 quants, then n / 32 floats holding each block's fp16 scale as a float.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels-cpu/dtype.h"

namespace ember::gpu {

// Bytes of n activations prepared for weight_type (n a multiple of 32 for Q8_0/Q4_0).
size_t dot_vec_bytes(DType weight_type, int64_t n);
// x: n floats -> xq (dot_vec_bytes(weight_type, n) bytes, 16-byte aligned).
void dot_prepare_vec(DType weight_type, const float* x, void* xq, int64_t n, cudaStream_t stream);
// max(x, 0) prepared so, in one launch: the same bits as a ReLU in place followed by dot_prepare_vec (x unchanged).
void dot_prepare_relu_vec(DType weight_type, const float* x, void* xq, int64_t n, cudaStream_t stream);

// The two parts of n activations in the Q8_0 layout above, for kernels that write it themselves.
struct Q8Parts {
    int8_t* qs = nullptr;  // n quants
    float* d = nullptr;    // n / 32 block scales
};
// xq's parts, or none for a null xq. Throws ember::Error naming `fn` when n is not a multiple of 32.
Q8Parts q8_parts(void* xq, int64_t n, const char* fn);

}  // namespace ember::gpu
