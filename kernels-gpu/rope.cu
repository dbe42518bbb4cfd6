#include <cuda_fp16.h>

#include <cmath>
#include <type_traits>

#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/kv-cache-types.cuh"
#include "kernels-gpu/launch.cuh"
#include "kernels-gpu/rope.h"

namespace ember::gpu {

namespace {

constexpr int kThreads = 256;

// One thread per (head, pair) of one token (blockIdx.y). theta_i = pos * theta_scale^i is built by i multiplications,
// as the CPU loop builds it, so the angles are the same floats.
__global__ void rope_kernel(float* __restrict__ x, int n_heads, int pos0, RopeParams p, float theta_scale) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int half = p.n_rot / 2;
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n_heads * half) return;
    const int h = idx / half, i = idx % half;
    float* xh = x + ((int64_t)blockIdx.y * n_heads + h) * p.head_dim;
    float theta = (float)(pos0 + (int)blockIdx.y);
    for (int j = 0; j < i; j++) theta *= theta_scale;
    const float angle = theta * p.freq_scale;
    const float c = cosf(angle), s = sinf(angle);
    const int i0 = p.neox ? i : 2 * i;
    const int i1 = p.neox ? i + half : 2 * i + 1;
    const float x0 = xh[i0], x1 = xh[i1];
    xh[i0] = x0 * c - x1 * s;
    xh[i1] = x0 * s + x1 * c;
}

// Element d of a head after the rotation of its pair (as rope_kernel writes it): h points at the head's unrotated
// values, half = n_rot / 2; elements from n_rot on are unchanged.
__device__ __forceinline__ float rotated(const float* __restrict__ h, int d, int pos, const RopeParams& p,
                                         float theta_scale) {
    const int half = p.n_rot / 2;
    if (d >= 2 * half) return h[d];
    const int i = p.neox ? (d < half ? d : d - half) : d / 2;
    const bool first = p.neox ? d < half : d % 2 == 0;
    const int i0 = p.neox ? i : 2 * i;
    const int i1 = p.neox ? i + half : 2 * i + 1;
    float theta = (float)pos;
    for (int j = 0; j < i; j++) theta *= theta_scale;
    const float angle = theta * p.freq_scale;
    const float c = cosf(angle), s = sinf(angle);
    const float x0 = h[i0], x1 = h[i1];
    return first ? x0 * c - x1 * s : x0 * s + x1 * c;
}

// A float as a cache element of type T (float, or __half rounded to nearest even as the CPU's F16 cache stores it).
template <typename T>
__device__ __forceinline__ T to_cache(float v) {
    if constexpr (std::is_same_v<T, float>)
        return v;
    else
        return __float2half_rn(v);
}

// Threads [0, q pairs): a pair of q in place; then one thread per element of k and of v into the cache rows, as
// elements of KT and VT.
template <typename KT, typename VT>
__global__ void rope_store_kv_kernel(float* __restrict__ q, int n_heads, const float* __restrict__ k,
                                     const float* __restrict__ v, int n_kv_heads, KT* __restrict__ k_cache,
                                     VT* __restrict__ v_cache, int64_t kv_stride, const int* __restrict__ pos_dev,
                                     RopeParams p, float theta_scale) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int half = p.n_rot / 2;
    const int pos = *pos_dev;
    const int q_pairs = n_heads * half, kv = n_kv_heads * p.head_dim;
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < q_pairs) {
        const int h = idx / half, i = idx % half;
        float* xh = q + (int64_t)h * p.head_dim;
        const int i0 = p.neox ? i : 2 * i;
        const int i1 = p.neox ? i + half : 2 * i + 1;
        const float r0 = rotated(xh, i0, pos, p, theta_scale), r1 = rotated(xh, i1, pos, p, theta_scale);
        xh[i0] = r0;
        xh[i1] = r1;
        return;
    }
    idx -= q_pairs;
    if (idx < kv) {
        const int h = idx / p.head_dim, d = idx % p.head_dim;
        const float rk = rotated(k + (int64_t)h * p.head_dim, d, pos, p, theta_scale);
        k_cache[(int64_t)pos * kv_stride + idx] = to_cache<KT>(rk);
        return;
    }
    idx -= kv;
    if (idx < kv) v_cache[(int64_t)pos * kv_stride + idx] = to_cache<VT>(v[idx]);
}

}  // namespace

void rope_store_kv(float* q, int n_heads, const float* k, const float* v, int n_kv_heads, void* k_cache, DType k_type,
                   void* v_cache, DType v_type, int64_t kv_stride, const int* pos, const RopeParams& p,
                   cudaStream_t stream) {
    check_kv_cache_types("gpu::rope_store_kv", k_type, v_type);
    const int threads = n_heads * (p.n_rot / 2) + 2 * n_kv_heads * p.head_dim;
    if (threads <= 0) return;
    const float theta_scale = std::pow(p.freq_base, -2.0f / (float)p.n_rot);  // as rope_tokens
    with_kv_cache_types(k_type, v_type, [&](auto kt, auto vt) {
        using KT = decltype(kt);
        using VT = decltype(vt);
        launch_chained(rope_store_kv_kernel<KT, VT>, dim3((threads + kThreads - 1) / kThreads), dim3(kThreads), 0,
                       stream, q, n_heads, k, v, n_kv_heads, static_cast<KT*>(k_cache), static_cast<VT*>(v_cache),
                       kv_stride, pos, p, theta_scale);
    });
}

void rope_tokens(float* x, int n_tokens, int n_heads, int pos0, const RopeParams& p, cudaStream_t stream) {
    const int pairs = n_heads * (p.n_rot / 2);
    if (n_tokens <= 0 || pairs <= 0) return;
    const float theta_scale = std::pow(p.freq_base, -2.0f / (float)p.n_rot);  // the CPU's expression, on the host
    const dim3 grid((pairs + kThreads - 1) / kThreads, n_tokens);
    launch_chained(rope_kernel, grid, dim3(kThreads), 0, stream, x, n_heads, pos0, p, theta_scale);
}

void rope(float* x, int n_heads, int pos, const RopeParams& p, cudaStream_t stream) {
    rope_tokens(x, 1, n_heads, pos, p, stream);
}

}  // namespace ember::gpu
