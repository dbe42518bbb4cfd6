// RMSNorm on the GPU; mirrors kernels-cpu/norm.h. Pointers are device memory.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ember::gpu {

// n_rows independent rows of n floats: out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w.
void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps, int n_rows, cudaStream_t stream);

// One token's step between two matvecs of a decode step, in one launch: x += add (unless add is null; x keeps the
// sum), out = rmsnorm(x) * w, and, unless q8 is null, out also as Q8_0 activations in dot_prepare_vec's layout (n a
// multiple of 32). The same bits as add_inplace, rmsnorm and dot_prepare_vec in turn. add_host, unless null, is
// added after add, read from pinned host memory as add_from_host reads it (x = (x + add) + add_host): its bits.
void add_rmsnorm(float* x, const float* add, const float* w, int64_t n, float eps, float* out, void* q8,
                 cudaStream_t stream, const float* add_host = nullptr);

}  // namespace ember::gpu
