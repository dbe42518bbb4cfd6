#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/launch.cuh"
#include "kernels-gpu/norm.h"

namespace ember::gpu {

namespace {

constexpr int kThreads = 256;

// One block per row: a strided sum of squares, reduced through warp shuffles then shared memory.
__global__ void rmsnorm_kernel(float* out, const float* x, const float* w, int64_t n, float eps) {
    wait_for_previous_kernel();
    release_next_kernel();
    const float* xr = x + blockIdx.x * n;
    float* yr = out + blockIdx.x * n;
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i] * xr[i];
    for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffff, sum, off);
    __shared__ float warp_sums[kThreads / 32];
    if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
    __syncthreads();
    if (threadIdx.x < 32) {
        sum = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0f;
        for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffff, sum, off);
        if (threadIdx.x == 0) warp_sums[0] = sum;
    }
    __syncthreads();
    const float scale = rsqrtf(warp_sums[0] / (float)n + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

}  // namespace

void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps, int n_rows, cudaStream_t stream) {
    if (n_rows <= 0) return;
    launch_chained(rmsnorm_kernel, dim3(n_rows), dim3(kThreads), 0, stream, out, x, w, n, eps);
}

}  // namespace ember::gpu
