#include <algorithm>
#include <string>

#include "engine/error.h"
#include "kernels-cpu/dot.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/launch.cuh"
#include "kernels-gpu/matmul.h"
#include "kernels-gpu/predictor.h"

namespace ember::gpu {

namespace {

constexpr int kScanThreads = 1024;  // 32 warps: the warp totals fit one warp's scan
constexpr int kMaxScanItems = 32;   // consecutive scores per thread and pass, one bit each

__device__ __forceinline__ int warp_inclusive_scan(int v, int lane) {
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
        const int y = __shfl_up_sync(0xffffffffu, v, off);
        if (lane >= off) v += y;
    }
    return v;
}

// Single block. A pass covers kScanThreads * per scores, per = min(32, ceil(n / kScanThreads)), so up to 32768
// scores (a 70B layer's 28672) take one pass. Warp w owns the pass's w-th run of 32 * per scores and reads it in
// `per` coalesced steps of 32, all loads issued before any is used (one memory latency); step e's comparisons are
// one ballot, kept by lane e. Scans of the ballots' counts, within the warp and then over the warps, give each
// flagged score its place, so the list comes out ascending.
__global__ void __launch_bounds__(kScanThreads)
    compact_kernel(const float* __restrict__ scores, int n, float threshold, int32_t* __restrict__ active,
                   int32_t* __restrict__ count) {
    wait_for_previous_kernel();
    release_next_kernel();
    __shared__ int warp_total[kScanThreads / 32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int per = min(kMaxScanItems, max(1, (n + kScanThreads - 1) / kScanThreads));
    int base = 0;  // indices written by earlier passes
    for (int start = 0; start < n; start += kScanThreads * per) {
        const int run = start + warp * 32 * per;  // this warp's first score
        float v[kMaxScanItems];
#pragma unroll
        for (int e = 0; e < kMaxScanItems; e++) {
            const int i = run + e * 32 + lane;
            v[e] = e < per && i < n ? scores[i] : threshold;  // threshold is never above itself
        }
        uint32_t mine = 0;  // lane e: the ballot of step e
#pragma unroll
        for (int e = 0; e < kMaxScanItems; e++) {
            const uint32_t b = __ballot_sync(0xffffffffu, v[e] > threshold);
            if (lane == e) mine = b;
        }
        const int c = __popc(mine);
        const int inc = warp_inclusive_scan(c, lane);
        if (lane == 31) warp_total[warp] = inc;
        __syncthreads();
        if (warp == 0) warp_total[lane] = warp_inclusive_scan(warp_total[lane], lane);
        __syncthreads();
        const int warp_base = base + (warp > 0 ? warp_total[warp - 1] : 0);
        const uint32_t below = (1u << lane) - 1u;  // lanes before this one
        for (int e = 0; e < per; e++) {
            const uint32_t b = __shfl_sync(0xffffffffu, mine, e);
            const int before = __shfl_sync(0xffffffffu, inc - c, e);  // flagged scores of steps 0 .. e-1
            if (b >> lane & 1u) active[warp_base + before + __popc(b & below)] = run + e * 32 + lane;
        }
        base += warp_total[kScanThreads / 32 - 1];
        __syncthreads();  // all threads have read warp_total before the next pass writes it
    }
    if (threadIdx.x == 0) *count = base;
}

}  // namespace

size_t predictor_xq_bytes(const PredictorGpuWeights& p) { return gpu::dot_vec_bytes(p.type, std::max(p.dim, p.rank)); }

void predictor_hidden(const PredictorGpuWeights& p, const float* x, const PredictorGpuScratch& s, cudaStream_t stream,
                      const void* x_prepared) {
    if (p.rank <= 0 || p.n_ff <= 0 || p.dim <= 0) return;
    // F32/F16 weights read F32 activations, which need no preparation: x is used as it is.
    const void* xq = x_prepared;
    if (xq == nullptr && dot_vec_type(p.type) == DType::DTYPE_F32) xq = x;
    if (xq == nullptr) {
        gpu::dot_prepare_vec(p.type, x, s.xq, p.dim, stream);
        xq = s.xq;
    }
    gpu::matvec(p.type, p.fc1, xq, s.hidden, p.rank, p.dim, stream);  // hidden (rank) = fc1 · x
    if (gpu::matvec_quantizes_floats(p.type, p.fc2, p.rank)) return;  // fc2's launches prepare s.hidden themselves
    if (p.hidden_relu)
        gpu::dot_prepare_relu_vec(p.type, s.hidden, s.xq, p.rank, stream);  // relu(hidden), prepared for fc2
    else if (dot_vec_type(p.type) != DType::DTYPE_F32)
        gpu::dot_prepare_vec(p.type, s.hidden, s.xq, p.rank, stream);  // hidden as fc2's Q8_0 activations
}

namespace {

// What fc2 reads after predictor_hidden: s.xq, or s.hidden itself (a linear predictor with F32 activations).
const void* fc2_input(const PredictorGpuWeights& p, const PredictorGpuScratch& s) {
    return !p.hidden_relu && dot_vec_type(p.type) == DType::DTYPE_F32 ? static_cast<const void*>(s.hidden) : s.xq;
}

}  // namespace

void predictor_scores_rows(const PredictorGpuWeights& p, const PredictorGpuScratch& s, int row_begin, int row_end,
                           float* scores, cudaStream_t stream) {
    if (row_begin < 0 || row_end > p.n_ff || row_end < row_begin)
        throw Error("gpu::predictor_scores_rows: rows [" + std::to_string(row_begin) + ", " +
                    std::to_string(row_end) + ") of a predictor with " + std::to_string(p.n_ff) +
                    " neurons, expected 0 <= begin <= end <= " + std::to_string(p.n_ff));
    if (p.rank <= 0 || p.dim <= 0 || row_end == row_begin) return;
    const auto* fc2 = static_cast<const uint8_t*>(p.fc2) + (size_t)row_begin * dtype_row_bytes(p.type, p.rank);
    if (gpu::matvec_quantizes_floats(p.type, p.fc2, p.rank))  // (fc2's rows all start 2-byte aligned, or none does)
        gpu::matvec_from_floats(p.type, fc2, s.hidden, p.hidden_relu, scores + row_begin, row_end - row_begin, p.rank,
                                stream);
    else
        gpu::matvec(p.type, fc2, fc2_input(p, s), scores + row_begin, row_end - row_begin, p.rank, stream);
}

void predictor_scores(const PredictorGpuWeights& p, const float* x, float* scores, const PredictorGpuScratch& s,
                      cudaStream_t stream, const void* x_prepared) {
    predictor_hidden(p, x, s, stream, x_prepared);
    predictor_scores_rows(p, s, 0, p.n_ff, scores, stream);  // scores (n_ff) = fc2 · (relu'd) hidden
}

void predictor_active(const float* scores, int n_ff, float threshold, int32_t* active, int32_t* count,
                      cudaStream_t stream) {
    if (n_ff < 0) n_ff = 0;  // an empty list: the kernel still writes *count = 0
    launch_chained(compact_kernel, dim3(1), dim3(kScanThreads), 0, stream, scores, n_ff, threshold, active, count);
}

}  // namespace ember::gpu
