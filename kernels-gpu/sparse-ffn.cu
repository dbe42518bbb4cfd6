#include <algorithm>
#include <string>

#include "engine/error.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot-device.cuh"
#include "kernels-gpu/launch.cuh"
#include "kernels-gpu/sparse-ffn.h"

namespace ember::gpu {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kMaxGateUpBlocks = 1024;  // 4096 warps: one neuron each up to k = 4096
constexpr int kSplits = 128;                // down: interleaved subsets of the active list, one sum each
                                            // (ember-gpu-bench, H200: 128 beat 64, 256 and 512)
constexpr int kNeuronsInFlight = 4;         // down: rows whose loads one thread issues before using them
constexpr int kRowGroups = 4;               // down: subsets one block adds up in shared memory
constexpr int kPartials = kSplits / kRowGroups;  // down: partial ys left for down_reduce_kernel

// One warp per active neuron: h[j] = act(gate row . x) * (up row . x), the up row skipped where a ReLU gate is not
// positive. Rows of any type through row_dot_partial (Q8_0/Q4_0 rows that can be tiled take gate_up_quant_kernel).
template <DType T, int U>
__global__ void __launch_bounds__(kThreads)
    gate_up_kernel(const uint8_t* __restrict__ gate, const uint8_t* __restrict__ up, const void* __restrict__ xq,
                   const int32_t* __restrict__ active, const int32_t* __restrict__ k_dev, float* __restrict__ h,
                   int64_t dim, size_t row_bytes, SparseAct act) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int k = *k_dev;
    const int lane = threadIdx.x % 32;
    auto dot = [&](const uint8_t* row) { return warp_sum(row_dot_partial<T, U, 32>(row, xq, dim, lane)); };
    const int64_t n_warps = (int64_t)gridDim.x * kWarps;
    for (int64_t j = (int64_t)blockIdx.x * kWarps + threadIdx.x / 32; j < k; j += n_warps) {  // uniform per warp
        const size_t off = (size_t)active[j] * row_bytes;
        const float g = dot(gate + off);
        float out = 0.0f;  // g is the same in every lane, so the warp takes the branches together
        if (act == SparseAct::SPARSE_ACT_RELU) {
            if (g > 0.0f) out = g * dot(up + off);
        } else {
            out = g / (1.0f + expf(-g)) * dot(up + off);
        }
        if (lane == 0) h[j] = out;
    }
}

// The same for Q8_0/Q4_0 rows that can be tiled, through the cp.async pipeline (QuantStages): each warp streams its
// neurons' gate rows, then up rows, a tile at a time through two shared-memory stages, the next tile's copy in flight
// while one is summed. After a gate row the first tile of its up row is already on its way; where a ReLU gate turns
// out not positive, that copy is dropped and the next neuron's gate row is fetched instead.
template <DType T, int TB>
__global__ void __launch_bounds__(kThreads)
    gate_up_quant_kernel(const uint8_t* __restrict__ gate, const uint8_t* __restrict__ up, const void* __restrict__ xq,
                         const int32_t* __restrict__ active, const int32_t* __restrict__ k_dev, float* __restrict__ h,
                         int64_t dim, size_t row_bytes, SparseAct act) {
    wait_for_previous_kernel();
    release_next_kernel();
    using S = QuantStages<T, TB>;
    __shared__ uint4 stages[kWarps][2][S::kVecs];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int k = *k_dev;
    const int8_t* xqs = static_cast<const int8_t*>(xq);
    const float* xd = reinterpret_cast<const float*>(xqs + dim);
    const int64_t n_blocks = dim / QK8_0;
    const int n_tiles = (int)((n_blocks + TB - 1) / TB);
    const int64_t stride = (int64_t)gridDim.x * kWarps;
    auto tile_blocks = [&](int t) { return (int)min((int64_t)TB, n_blocks - (int64_t)t * TB); };
    // Tile t of neuron j's gate (part 0) or up (part 1) row into stage s; commits a group either way.
    auto issue = [&](int64_t j, int part, int t, int s) {
        if (j < k) {
            const uint8_t* src = (part == 0 ? gate : up) + (size_t)active[j] * row_bytes + (size_t)t * TB * S::kBlockBytes;
            stage_blocks_async<T, TB>(stages[warp][s], src, tile_blocks(t), lane);
        }
        cp_async_commit();
    };
    int64_t j = (int64_t)blockIdx.x * kWarps + warp;
    int part = 0, t = 0, s = 0;
    float acc = 0.0f, g = 0.0f;
    issue(j, 0, 0, 0);
    while (j < k) {  // uniform per warp
        // The next tile, taking the up row as needed.
        int64_t jn = j;
        int pn = part, tn = t + 1;
        if (tn == n_tiles) {
            tn = 0;
            if (part == 0)
                pn = 1;
            else
                pn = 0, jn = j + stride;
        }
        issue(jn, pn, tn, s ^ 1);
        cp_async_wait<1>();  // this tile's group has landed
        __syncwarp();
        acc += tile_dot_quant<T, TB>(stages[warp][s], tile_blocks(t), (int64_t)t * TB, xqs, xd, lane);
        __syncwarp();  // every lane is done with stage s before it is refilled
        s ^= 1;
        if (++t < n_tiles) continue;
        const float sum = warp_sum(acc);  // the same in every lane: the warp takes the branches together
        acc = 0.0f;
        t = 0;
        if (part == 0) {
            g = sum;
            if (act != SparseAct::SPARSE_ACT_RELU || g > 0.0f) {
                part = 1;  // its first tile is in stage s
                continue;
            }
            if (lane == 0) h[j] = 0.0f;
            j += stride;
            cp_async_wait<0>();  // the up tile no one needs has landed in stage s: refill it with the next gate
            __syncwarp();
            issue(j, 0, 0, s);
        } else {
            const float out = act == SparseAct::SPARSE_ACT_RELU ? g * sum : g / (1.0f + expf(-g)) * sum;
            if (lane == 0) h[j] = out;
            part = 0;
            j += stride;  // its first gate tile is in stage s
        }
    }
    cp_async_wait<0>();
}

// Block (slice x, y), threads (column unit, row group g): the thread adds h[j] * row active[j] over
// j = i, i + kSplits, i + 2 kSplits, ... < *k for its subset i = y * kRowGroups + g; the block then adds its
// kRowGroups sums in group order in shared memory, and part[y][c .. c+U) gets the total. Fewer partials to write and
// add up than one per subset (ncu, H200: the separate reduction of 128 partials took 7.7 us against 11.2 for the sums).
template <DType T, int U>
__global__ void __launch_bounds__(kThreads * kRowGroups)
    down_partial_kernel(const uint8_t* __restrict__ w, const float* __restrict__ h, const int32_t* __restrict__ active,
                        const int32_t* __restrict__ k_dev, float* __restrict__ part, int64_t dim, size_t row_bytes) {
    wait_for_previous_kernel();
    release_next_kernel();
    __shared__ float groups[kRowGroups - 1][U][kThreads];  // groups 1.. for group 0 to add
    const int tx = threadIdx.x, g = threadIdx.y;
    const int64_t c = ((int64_t)blockIdx.x * kThreads + tx) * U;
    const bool in = c < dim;  // no early return: every thread reaches the barrier
    const int k = *k_dev;
    float acc[U];
#pragma unroll
    for (int e = 0; e < U; e++) acc[e] = 0.0f;
    int j = blockIdx.y * kRowGroups + g;
    for (; in && j + (kNeuronsInFlight - 1) * kSplits < k; j += kNeuronsInFlight * kSplits) {
        float hv[kNeuronsInFlight], v[kNeuronsInFlight][U];
#pragma unroll
        for (int q = 0; q < kNeuronsInFlight; q++) {
            hv[q] = h[j + q * kSplits];
            if (hv[q] != 0.0f) {
                load_elems<T, U>(w + (size_t)active[j + q * kSplits] * row_bytes, c, v[q]);
            } else {
#pragma unroll
                for (int e = 0; e < U; e++) v[q][e] = 0.0f;
            }
        }
#pragma unroll
        for (int q = 0; q < kNeuronsInFlight; q++)
#pragma unroll
            for (int e = 0; e < U; e++) acc[e] += hv[q] * v[q][e];
    }
    for (; in && j < k; j += kSplits) {
        const float hj = h[j];
        if (hj == 0.0f) continue;
        float v[U];
        load_elems<T, U>(w + (size_t)active[j] * row_bytes, c, v);
#pragma unroll
        for (int e = 0; e < U; e++) acc[e] += hj * v[e];
    }
    if (g > 0) {
#pragma unroll
        for (int e = 0; e < U; e++) groups[g - 1][e][tx] = acc[e];
    }
    __syncthreads();
    if (g == 0 && in) {
#pragma unroll
        for (int i = 0; i < kRowGroups - 1; i++)
#pragma unroll
            for (int e = 0; e < U; e++) acc[e] += groups[i][e][tx];
        float* out = part + (int64_t)blockIdx.y * dim + c;
#pragma unroll
        for (int e = 0; e < U; e++) out[e] = acc[e];
    }
}

// y[c] = sum of the kPartials partials in a fixed order: warp w of a block adds partials w, w + kReduceWarps, ... of
// the block's 32 columns (one per lane), then the warps' sums are added in warp order. Each thread has
// kPartials / kReduceWarps loads to wait for rather than kPartials.
constexpr int kReduceWarps = 8;
__global__ void __launch_bounds__(32 * kReduceWarps)
    down_reduce_kernel(const float* __restrict__ part, float* __restrict__ y, int64_t dim) {
    wait_for_previous_kernel();
    release_next_kernel();
    __shared__ float sums[kReduceWarps][32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t c = (int64_t)blockIdx.x * 32 + lane;
    float s = 0.0f;
    if (c < dim) {
#pragma unroll
        for (int i = warp; i < kPartials; i += kReduceWarps) s += part[(int64_t)i * dim + c];
    }
    sums[warp][lane] = s;
    __syncthreads();
    if (warp == 0 && c < dim) {
        float t = sums[0][lane];
#pragma unroll
        for (int w = 1; w < kReduceWarps; w++) t += sums[w][lane];
        y[c] = t;
    }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

void check_dim(const char* fn, DType wt, int64_t dim) {
    if (dim % dtype_block_elems(wt) != 0)
        throw Error(std::string(fn) + ": " + dtype_name(wt) + " rows of " + std::to_string(dim) +
                    " elements, expected a multiple of " + std::to_string(dtype_block_elems(wt)));
}

template <DType T, int U>
void launch_gate_up(const SparseGateUpWeights& w, const void* xq, const int32_t* active, const int32_t* k,
                    int64_t k_max, float* h, cudaStream_t stream) {
    const int64_t blocks = std::clamp<int64_t>((k_max + kWarps - 1) / kWarps, 1, kMaxGateUpBlocks);
    const size_t rb = dtype_row_bytes(T, w.dim);
    const auto* gate = static_cast<const uint8_t*>(w.w_gate);
    const auto* up = static_cast<const uint8_t*>(w.w_up);
    if constexpr (dtype_is_quant(T)) {
        if (quant_rows_tileable(gate, rb) && quant_rows_tileable(up, rb)) {
            launch_chained(gate_up_quant_kernel<T, kQuantStageBlocks>, dim3((unsigned)blocks), dim3(kThreads), 0,
                           stream, gate, up, xq, active, k, h, w.dim, rb, w.act);
            return;
        }
    }
    launch_chained(gate_up_kernel<T, U>, dim3((unsigned)blocks), dim3(kThreads), 0, stream, gate, up, xq, active, k, h,
                   w.dim, rb, w.act);
}

template <DType T>
void gate_up_float(const SparseGateUpWeights& w, const void* xq, const int32_t* active, const int32_t* k, int64_t k_max,
                   float* h, cudaStream_t stream) {
    if (w.dim % kUnit == 0 && aligned16(w.w_gate) && aligned16(w.w_up) && aligned16(xq))
        launch_gate_up<T, kUnit>(w, xq, active, k, k_max, h, stream);
    else
        launch_gate_up<T, 1>(w, xq, active, k, k_max, h, stream);
}

template <DType T, int U>
void launch_down(const void* w, const float* h, const int32_t* active, const int32_t* k, float* y, int64_t dim,
                 float* scratch, cudaStream_t stream) {
    const int64_t cols_per_block = (int64_t)kThreads * U;
    const dim3 grid((unsigned)((dim + cols_per_block - 1) / cols_per_block), kPartials);
    launch_chained(down_partial_kernel<T, U>, grid, dim3(kThreads, kRowGroups), 0, stream,
                   static_cast<const uint8_t*>(w), h, active, k, scratch, dim, dtype_row_bytes(T, dim));
    launch_chained(down_reduce_kernel, dim3((unsigned)((dim + 31) / 32)), dim3(32 * kReduceWarps), 0, stream, scratch,
                   y, dim);
}

template <DType T>
void down_float(const void* w, const float* h, const int32_t* active, const int32_t* k, float* y, int64_t dim,
                float* scratch, cudaStream_t stream) {
    if (dim % kUnit == 0 && aligned16(w))
        launch_down<T, kUnit>(w, h, active, k, y, dim, scratch, stream);
    else
        launch_down<T, 1>(w, h, active, k, y, dim, scratch, stream);
}

}  // namespace

void sparse_gate_up(const SparseGateUpWeights& w, const void* xq, const int32_t* active, const int32_t* k,
                    int64_t k_max, float* h, cudaStream_t stream) {
    if (k_max <= 0 || w.dim <= 0) return;
    check_dim("gpu::sparse_gate_up", w.wt, w.dim);
    switch (w.wt) {
        case DType::DTYPE_F32:
            return gate_up_float<DType::DTYPE_F32>(w, xq, active, k, k_max, h, stream);
        case DType::DTYPE_F16:
            return gate_up_float<DType::DTYPE_F16>(w, xq, active, k, k_max, h, stream);
        case DType::DTYPE_BF16:
            return gate_up_float<DType::DTYPE_BF16>(w, xq, active, k, k_max, h, stream);
        case DType::DTYPE_Q8_0:
            return launch_gate_up<DType::DTYPE_Q8_0, kUnit>(w, xq, active, k, k_max, h, stream);
        case DType::DTYPE_Q4_0:
            return launch_gate_up<DType::DTYPE_Q4_0, kUnit>(w, xq, active, k, k_max, h, stream);
    }
    throw Error("gpu::sparse_gate_up: weight type " + std::to_string((uint32_t)w.wt) + " is not supported");
}

size_t sparse_down_scratch_floats(int64_t dim) { return (size_t)kPartials * (size_t)dim; }

void sparse_down(DType wt, const void* w_down_t, const float* h, const int32_t* active, const int32_t* k, float* y,
                 int64_t dim, float* scratch, cudaStream_t stream) {
    if (dim <= 0) return;
    check_dim("gpu::sparse_down", wt, dim);
    switch (wt) {
        case DType::DTYPE_F32:
            return down_float<DType::DTYPE_F32>(w_down_t, h, active, k, y, dim, scratch, stream);
        case DType::DTYPE_F16:
            return down_float<DType::DTYPE_F16>(w_down_t, h, active, k, y, dim, scratch, stream);
        case DType::DTYPE_BF16:
            return down_float<DType::DTYPE_BF16>(w_down_t, h, active, k, y, dim, scratch, stream);
        case DType::DTYPE_Q8_0:
            return launch_down<DType::DTYPE_Q8_0, kUnit>(w_down_t, h, active, k, y, dim, scratch, stream);
        case DType::DTYPE_Q4_0:
            return launch_down<DType::DTYPE_Q4_0, kUnit>(w_down_t, h, active, k, y, dim, scratch, stream);
    }
    throw Error("gpu::sparse_down: weight type " + std::to_string((uint32_t)wt) + " is not supported");
}

}  // namespace ember::gpu
