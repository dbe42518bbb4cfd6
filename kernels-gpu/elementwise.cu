#include <cuda_fp16.h>

#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/elementwise.h"
#include "kernels-gpu/launch.cuh"
#include "kernels-gpu/quantize-device.cuh"

namespace ember::gpu {

namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) { return (int)((n + kThreads - 1) / kThreads); }

__global__ void f32_to_f16_kernel(uint16_t* dst, const float* x, int64_t n) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __half_as_ushort(__float2half_rn(x[i]));
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

// A GLU's output element i (v; exists where i < n), stored to out and, unless qs is null, quantized with its warp's
// 32 elements (one Q8_0 block: n is a multiple of 32, so a warp is in range as a whole or not at all).
__device__ __forceinline__ void store_glu(float v, int64_t i, int64_t n, float* out, int8_t* qs, float* qd) {
    if (i < n) out[i] = v;
    if (qs == nullptr || i - threadIdx.x % 32 >= n) return;
    const int64_t b = i / QK8_0;
    quantize_q8_block_warp(v, (int)(i % QK8_0), qs + b * QK8_0, qd + b);
}

__global__ void reglu_kernel(float* out, const float* gate, const float* up, int64_t n, int8_t* qs, float* qd) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    float v = 0.0f;
    if (i < n) {
        const float g = gate[i];
        v = g > 0.0f ? g * up[i] : 0.0f;  // exactly zero where the gate is not positive, as on the CPU
    }
    store_glu(v, i, n, out, qs, qd);
}

__global__ void swiglu_kernel(float* out, const float* gate, const float* up, int64_t n, int8_t* qs, float* qd) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    float v = 0.0f;
    if (i < n) {
        const float g = gate[i];
        v = g / (1.0f + expf(-g)) * up[i];
    }
    store_glu(v, i, n, out, qs, qd);
}

__global__ void count_nonzero_kernel(const float* h, const int32_t* k, int32_t* out) {
    wait_for_previous_kernel();
    release_next_kernel();
    __shared__ int32_t partial[kThreads];
    int32_t c = 0;
    for (int32_t j = threadIdx.x; j < *k; j += kThreads) c += h[j] != 0.0f;
    partial[threadIdx.x] = c;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s /= 2) {
        if ((int)threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = partial[0];
}

// One block per row.
__global__ void mask_predicted_kernel(float* h, int64_t ld_h, const float* scores, int64_t ld_s, int n_cols,
                                      float threshold, int32_t* predicted, int32_t* fired) {
    wait_for_previous_kernel();
    release_next_kernel();
    __shared__ int32_t part_p[kThreads], part_f[kThreads];
    float* hr = h + (int64_t)blockIdx.x * ld_h;
    const float* sr = scores + (int64_t)blockIdx.x * ld_s;
    int32_t p = 0, f = 0;
    for (int c = threadIdx.x; c < n_cols; c += kThreads) {
        if (sr[c] > threshold) {
            p++;
            f += hr[c] != 0.0f;
        } else {
            hr[c] = 0.0f;
        }
    }
    part_p[threadIdx.x] = p;
    part_f[threadIdx.x] = f;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s /= 2) {
        if ((int)threadIdx.x < s) {
            part_p[threadIdx.x] += part_p[threadIdx.x + s];
            part_f[threadIdx.x] += part_f[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) predicted[blockIdx.x] = part_p[0], fired[blockIdx.x] = part_f[0];
}

}  // namespace

void mask_predicted(float* h, int64_t ld_h, const float* scores, int64_t ld_scores, int n_rows, int n_cols,
                    float threshold, int32_t* predicted, int32_t* fired, cudaStream_t stream) {
    if (n_rows <= 0) return;
    launch_chained(mask_predicted_kernel, dim3(n_rows), dim3(kThreads), 0, stream, h, ld_h, scores, ld_scores, n_cols,
                   threshold, predicted, fired);
}

void count_nonzero(const float* h, const int32_t* k, int32_t* out, cudaStream_t stream) {
    launch_chained(count_nonzero_kernel, dim3(1), dim3(kThreads), 0, stream, h, k, out);
}

void f32_to_f16(uint16_t* dst, const float* x, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    launch_chained(f32_to_f16_kernel, dim3(blocks_for(n)), dim3(kThreads), 0, stream, dst, x, n);
}

void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    launch_chained(add_kernel, dim3(blocks_for(n)), dim3(kThreads), 0, stream, x, y, n);
}

void reglu(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream, void* q8) {
    if (n <= 0) return;
    const Q8Parts q = q8_parts(q8, n, "gpu::reglu");
    launch_chained(reglu_kernel, dim3(blocks_for(n)), dim3(kThreads), 0, stream, out, gate, up, n, q.qs, q.d);
}
void swiglu(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream, void* q8) {
    if (n <= 0) return;
    const Q8Parts q = q8_parts(q8, n, "gpu::swiglu");
    launch_chained(swiglu_kernel, dim3(blocks_for(n)), dim3(kThreads), 0, stream, out, gate, up, n, q.qs, q.d);
}

}  // namespace ember::gpu
