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
// scores (a 70B layer's 28672) take one pass: thread t loads its `per` consecutive scores at once (one memory
// latency, not one per 4096 scores), keeps the comparisons as bits, and an exclusive scan of the bit counts gives
// where its indices go, so the list comes out ascending.
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
        const int i0 = start + threadIdx.x * per;
        uint32_t on = 0;
#pragma unroll
        for (int e = 0; e < kMaxScanItems; e++)
            if (e < per && i0 + e < n && scores[i0 + e] > threshold) on |= 1u << e;
        const int c = __popc(on);
        const int inc = warp_inclusive_scan(c, lane);
        if (lane == 31) warp_total[warp] = inc;
        __syncthreads();
        if (warp == 0) warp_total[lane] = warp_inclusive_scan(warp_total[lane], lane);
        __syncthreads();
        int pos = base + (warp > 0 ? warp_total[warp - 1] : 0) + inc - c;
        for (; on; on &= on - 1) active[pos++] = i0 + __ffs(on) - 1;
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
    gpu::dot_prepare_relu_vec(p.type, s.hidden, s.xq, p.rank, stream);  // relu(hidden), prepared for fc2
}

void predictor_scores_rows(const PredictorGpuWeights& p, const PredictorGpuScratch& s, int row_begin, int row_end,
                           float* scores, cudaStream_t stream) {
    if (row_begin < 0 || row_end > p.n_ff || row_end < row_begin)
        throw Error("gpu::predictor_scores_rows: rows [" + std::to_string(row_begin) + ", " +
                    std::to_string(row_end) + ") of a predictor with " + std::to_string(p.n_ff) +
                    " neurons, expected 0 <= begin <= end <= " + std::to_string(p.n_ff));
    if (p.rank <= 0 || p.dim <= 0 || row_end == row_begin) return;
    const auto* fc2 = static_cast<const uint8_t*>(p.fc2) + (size_t)row_begin * dtype_row_bytes(p.type, p.rank);
    gpu::matvec(p.type, fc2, s.xq, scores + row_begin, row_end - row_begin, p.rank, stream);
}

void predictor_scores(const PredictorGpuWeights& p, const float* x, float* scores, const PredictorGpuScratch& s,
                      cudaStream_t stream, const void* x_prepared) {
    predictor_hidden(p, x, s, stream, x_prepared);
    predictor_scores_rows(p, s, 0, p.n_ff, scores, stream);  // scores (n_ff) = fc2 · relu(hidden)
}

void predictor_active(const float* scores, int n_ff, float threshold, int32_t* active, int32_t* count,
                      cudaStream_t stream) {
    if (n_ff < 0) n_ff = 0;  // an empty list: the kernel still writes *count = 0
    launch_chained(compact_kernel, dim3(1), dim3(kScanThreads), 0, stream, scores, n_ff, threshold, active, count);
}

}  // namespace ember::gpu
