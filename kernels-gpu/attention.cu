#include <cuda_fp16.h>

#include <cmath>
#include <string>
#include <type_traits>

#include "engine/error.h"
#include "kernels-gpu/attention.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/kv-cache-types.cuh"
#include "kernels-gpu/launch.cuh"
#include "kernels-gpu/quantize-device.cuh"

namespace ember::gpu {

namespace {

constexpr int kChunk = 128;  // positions per block
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxHeadDim = 256;
constexpr int kPosPerWarp = 4;  // scores: keys loaded together by one warp before their reductions

struct AttnParams {
    const float* q;  // (n_tokens, n_heads, head_dim)
    const void* k;   // (n_kv, kv_stride) of the key type (float or __half)
    const void* v;   // (n_kv, kv_stride) of the value type
    float* part;     // partials: (n_tokens, n_run, n_splits) x head_dim, then the maxima, then the sums
    float* out;      // (n_tokens, n_heads, head_dim)
    int n_kv0;       // positions token 0 attends; token i attends n_kv0 + i
    const int* pos;  // when set, n_kv0 = *pos + 1, read on the device (one token)
    int n_tokens;
    int head_begin;
    int n_run;  // heads computed: head_begin .. head_begin + n_run - 1
    int n_heads;
    int group;  // query heads per KV head
    int head_dim;
    int n_splits;  // chunks of the longest token's positions
    int64_t kv_stride;
    float scale;
    int8_t* out_qs;  // when set (one token): out also as Q8_0 activations, quants here
    float* out_qd;   // and their block scales
};

// Positions token 0 attends: read on the device when p.pos is set.
__device__ __forceinline__ int first_n_kv(const AttnParams& p) { return p.pos ? *p.pos + 1 : p.n_kv0; }

// VEC (4 or 1) cache elements of type T (float or __half) from p, as floats. VEC 4 reads 16 bytes of floats or 8 of
// halves in one load: the launch checked the alignment.
template <typename T, int VEC>
__device__ __forceinline__ void load_cache(const T* p, float out[VEC]) {
    if constexpr (std::is_same_v<T, float>) {
        if constexpr (VEC == 4) {
            const float4 a = *reinterpret_cast<const float4*>(p);
            out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
        } else {
            out[0] = p[0];
        }
    } else {
        if constexpr (VEC == 4) {
            const uint2 w = *reinterpret_cast<const uint2*>(p);
            const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&w.x));
            const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&w.y));
            out[0] = a.x, out[1] = a.y, out[2] = b.x, out[3] = b.y;
        } else {
            out[0] = __half2float(p[0]);
        }
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// Block (split s, head, token): the softmax of positions [s * kChunk, ...) of this token, unnormalised:
// m = max score, l = sum_t exp(score_t - m), o = sum_t exp(score_t - m) v_t. KT, VT: the caches' element types
// (float or __half); VEC: elements per load (4 or 1).
template <typename KT, typename VT, int VEC>
__global__ void __launch_bounds__(kThreads) attn_partial_kernel(AttnParams p) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int split = blockIdx.x, hh = blockIdx.y, tok = blockIdx.z;
    const int h = p.head_begin + hh;
    const int n_kv = first_n_kv(p) + tok;
    const int t0 = split * kChunk;
    if (t0 >= n_kv) return;  // whole block: this token has fewer positions
    const int t1 = min(t0 + kChunk, n_kv), len = t1 - t0;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    constexpr int kPer = kMaxHeadDim / (32 * VEC);  // loads per lane covering one head

    __shared__ __align__(16) float sq[kMaxHeadDim];
    __shared__ float sp[kChunk];
    __shared__ float sred[kWarps][kMaxHeadDim];
    const float* q = p.q + ((int64_t)tok * p.n_heads + h) * p.head_dim;
    for (int d = threadIdx.x; d < p.head_dim; d += kThreads) sq[d] = q[d];
    __syncthreads();
    const int64_t kv_off = (int64_t)(h / p.group) * p.head_dim;

    // Scores: one warp per key, kPosPerWarp keys in flight per warp.
    for (int tb = t0 + warp * kPosPerWarp; tb < t1; tb += kWarps * kPosPerWarp) {
        float acc[kPosPerWarp];
#pragma unroll
        for (int j = 0; j < kPosPerWarp; j++) {
            acc[j] = 0.0f;
            if (tb + j < t1) {
                const KT* kr = static_cast<const KT*>(p.k) + (int64_t)(tb + j) * p.kv_stride + kv_off;
#pragma unroll
                for (int i = 0; i < kPer; i++) {
                    const int d = (lane + 32 * i) * VEC;
                    if (d < p.head_dim) {
                        float kv[VEC];
                        load_cache<KT, VEC>(kr + d, kv);
                        float dot = kv[0] * sq[d];
#pragma unroll
                        for (int e = 1; e < VEC; e++) dot += kv[e] * sq[d + e];
                        acc[j] += dot;
                    }
                }
            }
        }
#pragma unroll
        for (int j = 0; j < kPosPerWarp; j++) acc[j] = warp_sum(acc[j]);
        if (lane == 0) {
#pragma unroll
            for (int j = 0; j < kPosPerWarp; j++)
                if (tb + j < t1) sp[tb + j - t0] = acc[j] * p.scale;
        }
    }
    __syncthreads();
    float m = -INFINITY;
    for (int t = 0; t < len; t++) m = fmaxf(m, sp[t]);
    __syncthreads();  // every thread has its max before the scores are overwritten
    for (int t = threadIdx.x; t < len; t += kThreads) sp[t] = expf(sp[t] - m);
    __syncthreads();

    // Weighted values: warp w takes positions w, w + kWarps, ...; its lanes cover the head.
    float o[kPer][VEC];
#pragma unroll
    for (int i = 0; i < kPer; i++)
#pragma unroll
        for (int e = 0; e < VEC; e++) o[i][e] = 0.0f;
#pragma unroll 2
    for (int t = warp; t < len; t += kWarps) {
        const float pt = sp[t];
        const VT* vr = static_cast<const VT*>(p.v) + (int64_t)(t0 + t) * p.kv_stride + kv_off;
#pragma unroll
        for (int i = 0; i < kPer; i++) {
            const int d = (lane + 32 * i) * VEC;
            if (d < p.head_dim) {
                float vv[VEC];
                load_cache<VT, VEC>(vr + d, vv);
#pragma unroll
                for (int e = 0; e < VEC; e++) o[i][e] += pt * vv[e];
            }
        }
    }
#pragma unroll
    for (int i = 0; i < kPer; i++) {
        const int d = (lane + 32 * i) * VEC;
        if (d < p.head_dim) {
#pragma unroll
            for (int e = 0; e < VEC; e++) sred[warp][d + e] = o[i][e];
        }
    }
    __syncthreads();
    const int64_t idx = ((int64_t)tok * p.n_run + hh) * p.n_splits + split;
    const int64_t n_part = (int64_t)p.n_tokens * p.n_run * p.n_splits;
    float* po = p.part + idx * p.head_dim;
    for (int d = threadIdx.x; d < p.head_dim; d += kThreads) {
        float s = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; w++) s += sred[w][d];
        po[d] = s;
    }
    if (threadIdx.x == 0) {
        float l = 0.0f;
        for (int t = 0; t < len; t++) l += sp[t];
        p.part[n_part * p.head_dim + idx] = m;
        p.part[n_part * p.head_dim + n_part + idx] = l;
    }
}

// Block (head, token): out = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s over this token's splits, M = max m_s.
__global__ void __launch_bounds__(kThreads) attn_combine_kernel(AttnParams p) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int hh = blockIdx.x, tok = blockIdx.y;
    const int n_splits = (first_n_kv(p) + tok + kChunk - 1) / kChunk;
    const int64_t idx0 = ((int64_t)tok * p.n_run + hh) * p.n_splits;
    const int64_t n_part = (int64_t)p.n_tokens * p.n_run * p.n_splits;
    const float* pm = p.part + n_part * p.head_dim + idx0;
    const float* pl = pm + n_part;
    float mx = -INFINITY;
    for (int s = 0; s < n_splits; s++) mx = fmaxf(mx, pm[s]);
    float l = 0.0f;
    for (int s = 0; s < n_splits; s++) l += expf(pm[s] - mx) * pl[s];
    const float inv_l = 1.0f / l;
    float* out = p.out + ((int64_t)tok * p.n_heads + p.head_begin + hh) * p.head_dim;
    for (int d = threadIdx.x; d < p.head_dim; d += kThreads) {  // whole warps when head_dim % 32 == 0
        float acc = 0.0f;
        for (int s = 0; s < n_splits; s++) acc += expf(pm[s] - mx) * p.part[(idx0 + s) * p.head_dim + d];
        out[d] = acc * inv_l;
        if (p.out_qs != nullptr) {
            const int64_t b = ((int64_t)(p.head_begin + hh) * p.head_dim + d) / QK8_0;
            quantize_q8_block_warp(acc * inv_l, d % QK8_0, p.out_qs + b * QK8_0, p.out_qd + b);
        }
    }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

void check_args(const char* fn, const AttentionArgs& a) {
    if (a.head_dim <= 0 || a.head_dim > kMaxHeadDim)
        throw Error(std::string(fn) + ": head_dim " + std::to_string(a.head_dim) + ", expected 1 .. " +
                    std::to_string(kMaxHeadDim));
    if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0)
        throw Error(std::string(fn) + ": n_heads " + std::to_string(a.n_heads) + " and n_kv_heads " +
                    std::to_string(a.n_kv_heads) + ", expected n_heads a multiple of n_kv_heads");
    check_kv_cache_types(fn, a.k_type, a.v_type);
}

void launch(const AttentionArgs& a, int head_begin, int n_run, int n_tokens, int n_kv0, cudaStream_t stream,
            const int* pos = nullptr, void* out_q8 = nullptr) {
    AttnParams p;
    const Q8Parts q = q8_parts(out_q8, (int64_t)a.n_heads * a.head_dim, "gpu::attention_heads_at");
    p.out_qs = q.qs;
    p.out_qd = q.d;
    p.pos = pos;
    p.q = a.q;
    p.k = a.k_cache;
    p.v = a.v_cache;
    p.part = a.scores;
    p.out = a.out;
    p.n_kv0 = n_kv0;
    p.n_tokens = n_tokens;
    p.head_begin = head_begin;
    p.n_run = n_run;
    p.n_heads = a.n_heads;
    p.group = a.n_heads / a.n_kv_heads;
    p.head_dim = a.head_dim;
    p.n_splits = (n_kv0 + n_tokens - 1 + kChunk - 1) / kChunk;
    p.kv_stride = a.kv_stride;
    p.scale = a.scale;
    // Loads of 4 elements: 16 bytes of floats, 8 of halves, from rows and heads that start at multiples of 4.
    const bool vec4 =
        a.head_dim % 4 == 0 && a.kv_stride % 4 == 0 && aligned16(a.q) && aligned16(a.k_cache) && aligned16(a.v_cache);
    const dim3 grid(p.n_splits, n_run, n_tokens);
    with_kv_cache_types(a.k_type, a.v_type, [&](auto kt, auto vt) {
        using KT = decltype(kt);
        using VT = decltype(vt);
        if (vec4)
            launch_chained(attn_partial_kernel<KT, VT, 4>, grid, dim3(kThreads), 0, stream, p);
        else
            launch_chained(attn_partial_kernel<KT, VT, 1>, grid, dim3(kThreads), 0, stream, p);
    });
    launch_chained(attn_combine_kernel, dim3(n_run, n_tokens), dim3(kThreads), 0, stream, p);
}

}  // namespace

size_t attention_scratch_floats(int n_kv, int n_heads, int head_dim, int n_tokens) {
    const size_t splits = (size_t)(n_kv + kChunk - 1) / kChunk;
    return (size_t)n_tokens * n_heads * splits * (head_dim + 2);
}

void attention_heads(const AttentionArgs& a, int head_begin, int head_end, cudaStream_t stream) {
    if (head_end <= head_begin || a.n_kv <= 0) return;
    check_args("gpu::attention_heads", a);
    launch(a, head_begin, head_end - head_begin, 1, a.n_kv, stream);
}

void attention_heads_at(const AttentionArgs& a, const int* pos, int head_begin, int head_end, cudaStream_t stream,
                        void* out_q8) {
    if (head_end <= head_begin || a.n_kv <= 0) return;
    check_args("gpu::attention_heads_at", a);
    if (out_q8 != nullptr && a.head_dim % QK8_0 != 0)
        throw Error("gpu::attention_heads_at: Q8_0 output for head_dim " + std::to_string(a.head_dim) +
                    ", expected a multiple of " + std::to_string(QK8_0));
    launch(a, head_begin, head_end - head_begin, 1, a.n_kv, stream, pos, out_q8);
}

int attention_splits(int n_kv) { return (n_kv + kChunk - 1) / kChunk; }

void attention_prefill(const AttentionArgs& a, int n_tokens, int pos0, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    check_args("gpu::attention_prefill", a);
    if (a.n_kv != pos0 + n_tokens)
        throw Error("gpu::attention_prefill: n_kv " + std::to_string(a.n_kv) +
                    ", expected pos0 + n_tokens = " + std::to_string(pos0 + n_tokens));
    launch(a, 0, a.n_heads, n_tokens, pos0 + 1, stream);
}

}  // namespace ember::gpu
