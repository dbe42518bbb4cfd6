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

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// Sums each of a[0 .. N) over the warp in N - 1 + log2(32 / N) shuffles rather than 5 N: in each halving step (lane
// offsets 16, 8, ...) a lane keeps one half of its values, the one its offset bit names, and adds its partner's copy
// of that half; then the one value left is summed over the remaining lanes. Returns the total of
// a[head_of_lane<N>(lane)]; a is clobbered. N: a power of two up to 32.
template <int N>
__device__ __forceinline__ float warp_sum_many(float (&a)[N], int lane) {
    static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "a power of two up to 32");
    int off = 16;
#pragma unroll
    for (int n = N; n > 1; n /= 2, off /= 2) {
        const bool upper = (lane & off) != 0;
#pragma unroll
        for (int i = 0; i < n / 2; i++) {
            const float send = upper ? a[i] : a[i + n / 2];
            const float keep = upper ? a[i + n / 2] : a[i];
            a[i] = keep + __shfl_xor_sync(0xffffffffu, send, off);
        }
    }
    float v = a[0];
#pragma unroll
    for (; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// The index whose total warp_sum_many<N> leaves in this lane, and the lanes that hold each total once (the others
// hold copies): those with the full-sum offsets' bits clear.
template <int N>
__device__ __forceinline__ int head_of_lane(int lane) {
    int h = 0, off = 16;
#pragma unroll
    for (int n = N; n > 1; n /= 2, off /= 2)
        if (lane & off) h += n / 2;
    return h;
}
template <int N>
__device__ __forceinline__ bool lane_writes_sum(int lane) {
    return (lane & (32 / N - 1)) == 0;
}

// The query heads one block of attn_partial_kernel<..., GH> takes: at most GH heads of one KV head's group, inside
// the run [head_begin, head_begin + n_run). Block row y = (KV head - the run's first) * pieces + piece, where each
// KV head's group is cut into pieces of GH heads.
struct HeadPiece {
    int first;  // first query head
    int n;      // heads, 0 .. GH (0: the piece lies outside the run)
};
__device__ __forceinline__ HeadPiece head_piece(const AttnParams& p, int y, int gh) {
    const int pieces = (p.group + gh - 1) / gh;
    const int kvh = p.head_begin / p.group + y / pieces, piece = y % pieces;
    const int lo = max(kvh * p.group + piece * gh, p.head_begin);
    const int hi = min(min(kvh * p.group + min((piece + 1) * gh, p.group), p.head_begin + p.n_run), p.n_heads);
    return {lo, max(hi - lo, 0)};
}

// Block (split s, piece of heads, token): for each of its query heads (heads sharing one KV head, so that every key
// and value row is read once for all of them), the softmax of positions [s * kChunk, ...) of this token,
// unnormalised: m = max score, l = sum_t exp(score_t - m), o = sum_t exp(score_t - m) v_t. KT, VT: the caches'
// element types (float or __half); VEC: elements per load (4 or 1); GH: query heads a block takes at most.
// W warps share the chunk's positions: 4 for one head a block, 8 where a block takes several (more warps to wait on
// memory while the others compute).
template <typename KT, typename VT, int VEC, int GH, int W>
__global__ void __launch_bounds__(32 * W) attn_partial_kernel(AttnParams p) {
    wait_for_previous_kernel();
    release_next_kernel();
    static_assert(kChunk <= 32 * W && W % 2 == 0, "a thread per position in the softmax");
    constexpr int kPos = GH >= 8 ? 4 : 8;           // keys a warp loads together before their sums
    constexpr int kPer = kMaxHeadDim / (32 * VEC);  // loads per lane covering one head
    // The warps' sums of the values meet in shared memory: all at once where that fits in 32 KiB (GH * W <= 32),
    // else in two rounds through half as many slots.
    constexpr bool kOneRound = GH * W <= 32;
    constexpr int kSlots = kOneRound ? W : W / 2;
    const int split = blockIdx.x, tok = blockIdx.z;
    const HeadPiece hp = head_piece(p, blockIdx.y, GH);
    const int n_kv = first_n_kv(p) + tok;
    const int t0 = split * kChunk;
    if (t0 >= n_kv || hp.n == 0) return;  // whole block: this token has fewer positions, or no head here
    const int t1 = min(t0 + kChunk, n_kv), len = t1 - t0;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t kv_off = (int64_t)(hp.first / p.group) * p.head_dim;

    __shared__ __align__(16) float sq[GH][kMaxHeadDim];
    __shared__ float sp[GH][kChunk];
    __shared__ float sred[kSlots][GH][kMaxHeadDim];
    __shared__ float swarp[2][W][GH];  // the warps' maxima, then their sums
    for (int i = 0; i < hp.n; i++) {
        const float* q = p.q + ((int64_t)tok * p.n_heads + hp.first + i) * p.head_dim;
        for (int d = threadIdx.x; d < p.head_dim; d += 32 * W) sq[i][d] = q[d];
    }
    __syncthreads();

    // Scores: one warp per key, kPos keys in flight per warp, each dotted with every head of the piece.
    const int h_lane = head_of_lane<GH>(lane);
    const bool writes = lane_writes_sum<GH>(lane) && h_lane < hp.n;
    for (int tb = t0 + warp * kPos; tb < t1; tb += W * kPos) {
        float acc[kPos][GH];
#pragma unroll
        for (int j = 0; j < kPos; j++) {
#pragma unroll
            for (int i = 0; i < GH; i++) acc[j][i] = 0.0f;
            if (tb + j < t1) {
                const KT* kr = static_cast<const KT*>(p.k) + (int64_t)(tb + j) * p.kv_stride + kv_off;
#pragma unroll
                for (int u = 0; u < kPer; u++) {
                    const int d = (lane + 32 * u) * VEC;
                    if (d < p.head_dim) {
                        float kv[VEC];
                        load_cache<KT, VEC>(kr + d, kv);
#pragma unroll
                        for (int i = 0; i < GH; i++) {
                            if (i < hp.n) {
                                float dot = kv[0] * sq[i][d];
#pragma unroll
                                for (int e = 1; e < VEC; e++) dot += kv[e] * sq[i][d + e];
                                acc[j][i] += dot;
                            }
                        }
                    }
                }
            }
        }
#pragma unroll
        for (int j = 0; j < kPos; j++) {
            const float sum = warp_sum_many<GH>(acc[j], lane);
            if (writes && tb + j < t1) sp[h_lane][tb + j - t0] = sum * p.scale;
        }
    }
    __syncthreads();

    // Softmax over the chunk, thread t on position t: the maxima, then exp(score - max) in place and their sums.
    const int t = threadIdx.x;
#pragma unroll
    for (int i = 0; i < GH; i++) {
        const float w = warp_max(i < hp.n && t < len ? sp[i][t] : -INFINITY);
        if (lane == 0) swarp[0][warp][i] = w;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < GH; i++) {
        float m = swarp[0][0][i];
#pragma unroll
        for (int w = 1; w < W; w++) m = fmaxf(m, swarp[0][w][i]);
        float e = 0.0f;
        if (i < hp.n && t < len) {
            e = expf(sp[i][t] - m);
            sp[i][t] = e;
        }
        e = warp_sum(e);
        if (lane == 0) swarp[1][warp][i] = e;
    }
    __syncthreads();

    // Weighted values: warp w takes positions w, w + W, ...; its lanes cover the head.
    float o[GH][kPer][VEC];
#pragma unroll
    for (int i = 0; i < GH; i++)
#pragma unroll
        for (int u = 0; u < kPer; u++)
#pragma unroll
            for (int e = 0; e < VEC; e++) o[i][u][e] = 0.0f;
#pragma unroll 4
    for (int tt = warp; tt < len; tt += W) {
        const VT* vr = static_cast<const VT*>(p.v) + (int64_t)(t0 + tt) * p.kv_stride + kv_off;
#pragma unroll
        for (int u = 0; u < kPer; u++) {
            const int d = (lane + 32 * u) * VEC;
            if (d < p.head_dim) {
                float vv[VEC];
                load_cache<VT, VEC>(vr + d, vv);
#pragma unroll
                for (int i = 0; i < GH; i++) {
                    if (i < hp.n) {
                        const float pt = sp[i][tt];
#pragma unroll
                        for (int e = 0; e < VEC; e++) o[i][u][e] += pt * vv[e];
                    }
                }
            }
        }
    }
    // fn(sum, head, element) over this lane's sums of the heads present.
    auto each_sum = [&](auto fn) {
#pragma unroll
        for (int i = 0; i < GH; i++)
#pragma unroll
            for (int u = 0; u < kPer; u++) {
                const int d = (lane + 32 * u) * VEC;
                if (i < hp.n && d < p.head_dim) {
#pragma unroll
                    for (int e = 0; e < VEC; e++) fn(o[i][u][e], i, d + e);
                }
            }
    };
    auto store = [&](int slot) { each_sum([&](float& x, int i, int c) { sred[slot][i][c] = x; }); };
    if constexpr (kOneRound) {
        store(warp);
    } else {  // warp w + kSlots's sums into warp w's, then those stored
        if (warp >= kSlots) store(warp - kSlots);
        __syncthreads();
        if (warp < kSlots) each_sum([&](float& x, int i, int c) { x += sred[warp][i][c]; });
        __syncthreads();
        if (warp < kSlots) store(warp);
    }
    __syncthreads();
    const int64_t n_part = (int64_t)p.n_tokens * p.n_run * p.n_splits;
    const int64_t idx0 = ((int64_t)tok * p.n_run + hp.first - p.head_begin) * p.n_splits + split;
    for (int x = threadIdx.x; x < hp.n * p.head_dim; x += 32 * W) {
        const int i = x / p.head_dim, d = x % p.head_dim;
        float s = 0.0f;
#pragma unroll
        for (int w = 0; w < kSlots; w++) s += sred[w][i][d];
        p.part[(idx0 + (int64_t)i * p.n_splits) * p.head_dim + d] = s;
    }
    if (threadIdx.x < hp.n) {
        const int i = threadIdx.x;
        float mx = swarp[0][0][i], l = 0.0f;  // the max again from shared memory: a thread's own index
#pragma unroll
        for (int w = 0; w < W; w++) mx = fmaxf(mx, swarp[0][w][i]), l += swarp[1][w][i];
        const int64_t idx = idx0 + (int64_t)i * p.n_splits;
        p.part[n_part * p.head_dim + idx] = mx;
        p.part[n_part * p.head_dim + n_part + idx] = l;
    }
}

// op (max or +) over one value per thread of the block (kThreads threads), the result in every thread, the warps'
// results combined in warp order; `red` holds kWarps floats and is free again on return.
template <typename Op>
__device__ __forceinline__ float block_reduce(float v, float* red, Op op) {
#pragma unroll
    for (int off = 16; off > 0; off /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    __syncthreads();
    float r = red[0];
#pragma unroll
    for (int w = 1; w < kWarps; w++) r = op(r, red[w]);
    __syncthreads();
    return r;
}

// Block (head, token): out = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s over this token's splits, M = max m_s.
// M and the denominator over the block's threads; then kThreads splits at a time have their weights e^(m_s - M) in
// shared memory while each thread adds its elements of their o_s, loads of several splits in flight together.
__global__ void __launch_bounds__(kThreads) attn_combine_kernel(AttnParams p) {
    wait_for_previous_kernel();
    release_next_kernel();
    constexpr int kPer = kMaxHeadDim / kThreads;  // elements of the head a thread adds
    __shared__ float red[kWarps];
    __shared__ float sw[kThreads];
    const int hh = blockIdx.x, tok = blockIdx.y, tid = threadIdx.x;
    const int n_splits = (first_n_kv(p) + tok + kChunk - 1) / kChunk;
    const int64_t idx0 = ((int64_t)tok * p.n_run + hh) * p.n_splits;
    const int64_t n_part = (int64_t)p.n_tokens * p.n_run * p.n_splits;
    const float* pm = p.part + n_part * p.head_dim + idx0;
    const float* pl = pm + n_part;
    float* out = p.out + ((int64_t)tok * p.n_heads + p.head_begin + hh) * p.head_dim;
    auto put = [&](int d, float v) {  // whole warps when head_dim % 32 == 0
        out[d] = v;
        if (p.out_qs != nullptr) {
            const int64_t b = ((int64_t)(p.head_begin + hh) * p.head_dim + d) / QK8_0;
            quantize_q8_block_warp(v, d % QK8_0, p.out_qs + b * QK8_0, p.out_qd + b);
        }
    };
    if (n_splits == 1) {  // a short context: the one partial, normalised
        const float inv = 1.0f / pl[0];
        for (int d = tid; d < p.head_dim; d += kThreads) put(d, p.part[idx0 * p.head_dim + d] * inv);
        return;
    }
    float mx = -INFINITY;
    for (int s = tid; s < n_splits; s += kThreads) mx = fmaxf(mx, pm[s]);
    mx = block_reduce(mx, red, [](float x, float y) { return fmaxf(x, y); });
    float l = 0.0f;
    for (int s = tid; s < n_splits; s += kThreads) l += expf(pm[s] - mx) * pl[s];
    const float inv_l = 1.0f / block_reduce(l, red, [](float x, float y) { return x + y; });
    float acc[kPer];
#pragma unroll
    for (int u = 0; u < kPer; u++) acc[u] = 0.0f;
    const float* po = p.part + idx0 * p.head_dim;
    for (int s0 = 0; s0 < n_splits; s0 += kThreads) {
        sw[tid] = s0 + tid < n_splits ? expf(pm[s0 + tid] - mx) : 0.0f;
        __syncthreads();
        const int n = min(kThreads, n_splits - s0);
#pragma unroll
        for (int u = 0; u < kPer; u++) {
            const int d = tid + u * kThreads;
            if (d < p.head_dim) {
                const float* col = po + (int64_t)s0 * p.head_dim + d;
#pragma unroll 8
                for (int j = 0; j < n; j++) acc[u] += sw[j] * col[(int64_t)j * p.head_dim];
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int u = 0; u < kPer; u++) {
        const int d = tid + u * kThreads;
        if (d < p.head_dim) put(d, acc[u] * inv_l);
    }
}

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
    // Query heads sharing a KV head go to one block, up to 8 (4 for groups of 2 to 4), so that each key and value is
    // read once for all of them; fewer where that leaves fewer blocks than SMs (a short context's few chunks). A group
    // of one, or rows that take one-element loads: one head a block.
    int gh = !vec4 || p.group == 1 ? 1 : p.group <= 4 ? 4 : 8;
    const int first_kvh = head_begin / p.group, last_kvh = (head_begin + n_run - 1) / p.group;
    auto rows_of = [&](int g) { return (last_kvh - first_kvh + 1) * ((p.group + g - 1) / g); };
    while (gh > 1 && (int64_t)p.n_splits * rows_of(gh) * n_tokens < device_sm_count()) gh = gh == 8 ? 4 : 1;
    const dim3 grid(p.n_splits, rows_of(gh), n_tokens);
    with_kv_cache_types(a.k_type, a.v_type, [&](auto kt, auto vt) {
        using KT = decltype(kt);
        using VT = decltype(vt);
        if (gh == 8)
            launch_chained(attn_partial_kernel<KT, VT, 4, 8, 8>, grid, dim3(32 * 8), 0, stream, p);
        else if (gh == 4)
            launch_chained(attn_partial_kernel<KT, VT, 4, 4, 8>, grid, dim3(32 * 8), 0, stream, p);
        else if (vec4)
            launch_chained(attn_partial_kernel<KT, VT, 4, 1, 4>, grid, dim3(32 * 4), 0, stream, p);
        else
            launch_chained(attn_partial_kernel<KT, VT, 1, 1, 4>, grid, dim3(32 * 4), 0, stream, p);
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
