#include <algorithm>

#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/launch.cuh"
#include "kernels-gpu/norm.h"
#include "kernels-gpu/quantize-device.cuh"

namespace ember::gpu {

namespace {

constexpr int kThreads = 256;

// One block per row: a strided sum of squares, reduced through warp shuffles then shared memory. With add and/or
// add_host, the residual addition first ((x + add) + add_host, a float add each, stored back to x; add_host read
// from host memory past every cache, as add_from_host reads it); with qs, the normalised row quantized after, a warp
// per 32-element block (read back from out: a block's global writes are visible to it after the barrier).
__global__ void rmsnorm_kernel(float* x, const float* add, const float* add_host, const float* w, int64_t n,
                               float eps, float* out, int8_t* qs, float* qd) {
    wait_for_previous_kernel();
    release_next_kernel();
    float* xr = x + blockIdx.x * n;
    float* yr = out + blockIdx.x * n;
    float sum = 0.0f;
    if (add != nullptr || add_host != nullptr) {
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            float v = xr[i];
            if (add != nullptr) v += add[blockIdx.x * n + i];
            if (add_host != nullptr) v += __ldcv(add_host + blockIdx.x * n + i);
            xr[i] = v;
            sum += v * v;
        }
    } else {
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i] * xr[i];
    }
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
    if (qs == nullptr) return;  // uniform in the block
    __syncthreads();
    const int lane = threadIdx.x % 32;
    int8_t* qr = qs + blockIdx.x * n;
    float* dr = qd + blockIdx.x * (n / QK8_0);
    for (int64_t b = threadIdx.x / 32; b < n / QK8_0; b += blockDim.x / 32)
        quantize_q8_block_warp(yr[b * QK8_0 + lane], lane, qr + b * QK8_0, dr + b);
}

// Rows of n floats held in registers, V float4 per thread (n % 4 == 0, 16-byte aligned rows, n <= 4 V blockDim.x),
// with rmsnorm_kernel's additions: every load is issued before the first use, so a row costs about one memory
// latency rather than one per element.
// Thread t holds float4s t, t + blockDim.x, ...; its sum of squares adds them in that order, then warp shuffles and
// a warp over the warp sums. The Q8_0 output: a block of 32 floats is 8 float4s held by 8 neighbouring lanes, whose
// maximum meets in 3 shuffles; each lane stores its 4 quants as one word.
template <int V>
__global__ void __launch_bounds__(1024)
    rmsnorm_vec_kernel(float* x, const float* add, const float* add_host, const float* w, int n, float eps,
                       float* out, int8_t* qs, float* qd) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int n4 = n / 4;
    const int64_t row0 = (int64_t)blockIdx.x * n;
    float4* xr = reinterpret_cast<float4*>(x + row0);
    const float4* ar = add != nullptr ? reinterpret_cast<const float4*>(add + row0) : nullptr;
    const float4* hr = add_host != nullptr ? reinterpret_cast<const float4*>(add_host + row0) : nullptr;
    const float4* wr = reinterpret_cast<const float4*>(w);
    float4 v[V], wv[V];
#pragma unroll
    for (int k = 0; k < V; k++) {
        const int j = threadIdx.x + k * blockDim.x;
        v[k] = j < n4 ? xr[j] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        wv[k] = j < n4 ? wr[j] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    if (ar != nullptr || hr != nullptr) {
        float4 b[V], h[V];
#pragma unroll
        for (int k = 0; k < V; k++) {
            const int j = threadIdx.x + k * blockDim.x;
            if (j < n4 && ar != nullptr) b[k] = ar[j];
            if (j < n4 && hr != nullptr) h[k] = __ldcv(hr + j);
        }
#pragma unroll
        for (int k = 0; k < V; k++) {
            const int j = threadIdx.x + k * blockDim.x;
            if (j >= n4) continue;
            if (ar != nullptr) v[k].x += b[k].x, v[k].y += b[k].y, v[k].z += b[k].z, v[k].w += b[k].w;
            if (hr != nullptr) v[k].x += h[k].x, v[k].y += h[k].y, v[k].z += h[k].z, v[k].w += h[k].w;
            xr[j] = v[k];
        }
    }
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < V; k++) sum += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
    for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    __shared__ float warp_sums[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    if (lane == 0) warp_sums[warp] = sum;
    __syncthreads();
    if (warp == 0) {
        sum = lane < n_warps ? warp_sums[lane] : 0.0f;
        for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
        if (lane == 0) warp_sums[0] = sum;
    }
    __syncthreads();
    const float scale = rsqrtf(warp_sums[0] / (float)n + eps);
    float4* yr = reinterpret_cast<float4*>(out + row0);
#pragma unroll
    for (int k = 0; k < V; k++) {
        const int j = threadIdx.x + k * blockDim.x;
        float4 y;
        y.x = v[k].x * scale * wv[k].x;
        y.y = v[k].y * scale * wv[k].y;
        y.z = v[k].z * scale * wv[k].z;
        y.w = v[k].w * scale * wv[k].w;
        if (j < n4) yr[j] = y;
        if (qs == nullptr) continue;  // uniform in the block
        // Lanes out of range hold zeros and take part in the shuffles; their group is out of range as a whole.
        float amax = fmaxf(fmaxf(fabsf(y.x), fabsf(y.y)), fmaxf(fabsf(y.z), fabsf(y.w)));
#pragma unroll
        for (int off = 1; off < 8; off *= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
        if (j >= n4) continue;
        const float d = q8_scale(amax), inv = q8_inverse(d);
        const uint32_t q0 = (uint32_t)q8_quant(y.x, inv) & 0xff, q1 = (uint32_t)q8_quant(y.y, inv) & 0xff,
                       q2 = (uint32_t)q8_quant(y.z, inv) & 0xff, q3 = (uint32_t)q8_quant(y.w, inv) & 0xff;
        reinterpret_cast<uint32_t*>(qs + row0)[j] = q0 | q1 << 8 | q2 << 16 | q3 << 24;
        if (j % 8 == 0) qd[row0 / QK8_0 + j / 8] = q8_stored_scale(d);
    }
}

constexpr int kMaxVecThreads = 1024, kMaxVecs = 4;

// Launches rmsnorm_vec_kernel where the rows allow it; returns false (nothing launched) where they do not.
bool launch_vec(float* x, const float* add, const float* add_host, const float* w, int64_t n, float eps, float* out,
                int8_t* qs, float* qd, int n_rows, cudaStream_t stream) {
    if (n % 4 != 0 || n > 4 * kMaxVecs * kMaxVecThreads || !aligned16(x) || !aligned16(add) ||
        !aligned16(add_host) || !aligned16(w) || !aligned16(out))
        return false;
    const int n4 = (int)(n / 4);
    const int threads = std::min(kMaxVecThreads, (n4 + 31) / 32 * 32);
    const int vecs = (n4 + threads - 1) / threads;
    const dim3 grid(n_rows), block(threads);
    const int m = (int)n;
    if (vecs == 1)
        launch_chained(rmsnorm_vec_kernel<1>, grid, block, 0, stream, x, add, add_host, w, m, eps, out, qs, qd);
    else if (vecs == 2)
        launch_chained(rmsnorm_vec_kernel<2>, grid, block, 0, stream, x, add, add_host, w, m, eps, out, qs, qd);
    else if (vecs == 3)
        launch_chained(rmsnorm_vec_kernel<3>, grid, block, 0, stream, x, add, add_host, w, m, eps, out, qs, qd);
    else
        launch_chained(rmsnorm_vec_kernel<4>, grid, block, 0, stream, x, add, add_host, w, m, eps, out, qs, qd);
    return true;
}

}  // namespace

void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps, int n_rows, cudaStream_t stream) {
    if (n_rows <= 0) return;
    auto* xw = const_cast<float*>(x);  // only read without an addition
    const float* none = nullptr;
    if (launch_vec(xw, none, none, w, n, eps, out, nullptr, nullptr, n_rows, stream)) return;
    launch_chained(rmsnorm_kernel, dim3(n_rows), dim3(kThreads), 0, stream, xw, none, none, w, n, eps, out,
                   static_cast<int8_t*>(nullptr), static_cast<float*>(nullptr));
}

void add_rmsnorm(float* x, const float* add, const float* w, int64_t n, float eps, float* out, void* q8,
                 cudaStream_t stream, const float* add_host) {
    if (n <= 0) return;
    const Q8Parts q = q8_parts(q8, n, "gpu::add_rmsnorm");
    if (launch_vec(x, add, add_host, w, n, eps, out, q.qs, q.d, 1, stream)) return;
    launch_chained(rmsnorm_kernel, dim3(1), dim3(kThreads), 0, stream, x, add, add_host, w, n, eps, out, q.qs, q.d);
}

}  // namespace ember::gpu
