// RMSNorm on the GPU; mirrors kernels-cpu/norm.h. Pointers are device memory.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ember::gpu {

// n_rows independent rows of n floats: out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w.
void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps, int n_rows, cudaStream_t stream);

}  // namespace ember::gpu
