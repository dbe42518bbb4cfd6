#include <algorithm>
#include <string>

#include "engine/error.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot-device.cuh"
#include "kernels-gpu/sparse-ffn.h"

namespace ember::gpu {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kMaxGateUpBlocks = 1024;  // 4096 warps: one neuron each up to k = 4096
constexpr int kSplits = 128;                // down: interleaved subsets of the active list, one partial y each
                                            // (ember-gpu-bench, H200: 128 beat 64, 256 and 512)
constexpr int kNeuronsInFlight = 4;         // down: rows whose loads one thread issues before using them

// Shared-memory vectors one warp's row tile takes: a quantized row tile (warp_row_dot_quant), else none needed.
template <DType T, bool Tiled>
__host__ __device__ constexpr int gate_up_tile_vecs() {
    if constexpr (Tiled)
        return QuantTile<T>::kVecs;
    else
        return 1;
}

// One warp per active neuron: h[j] = act(gate row . x) * (up row . x), the up row skipped where a ReLU gate is not
// positive. Tiled: Q8_0/Q4_0 rows through shared-memory tiles (warp_row_dot_quant), else row_dot_partial.
template <DType T, int U, bool Tiled>
__global__ void __launch_bounds__(kThreads)
    gate_up_kernel(const uint8_t* __restrict__ gate, const uint8_t* __restrict__ up, const void* __restrict__ xq,
                   const int32_t* __restrict__ active, const int32_t* __restrict__ k_dev, float* __restrict__ h,
                   int64_t dim, size_t row_bytes, SparseAct act) {
    __shared__ uint4 tiles[kWarps][gate_up_tile_vecs<T, Tiled>()];
    uint4* tile = tiles[threadIdx.x / 32];
    const int k = *k_dev;
    const int lane = threadIdx.x % 32;
    auto dot = [&](const uint8_t* row) {
        if constexpr (Tiled)
            return warp_sum(warp_row_dot_quant<T>(row, xq, dim, lane, tile));
        else
            return warp_sum(row_dot_partial<T, U, 32>(row, xq, dim, lane));
    };
    (void)tile;
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

// Block (slice x, subset y): part[y][c .. c+U) = sum over j = y, y + kSplits, ... < *k of h[j] * row active[j].
template <DType T, int U>
__global__ void __launch_bounds__(kThreads)
    down_partial_kernel(const uint8_t* __restrict__ w, const float* __restrict__ h, const int32_t* __restrict__ active,
                        const int32_t* __restrict__ k_dev, float* __restrict__ part, int64_t dim, size_t row_bytes) {
    const int64_t c = ((int64_t)blockIdx.x * kThreads + threadIdx.x) * U;
    if (c >= dim) return;
    const int k = *k_dev;
    float acc[U];
#pragma unroll
    for (int e = 0; e < U; e++) acc[e] = 0.0f;
    int j = blockIdx.y;
    for (; j + (kNeuronsInFlight - 1) * kSplits < k; j += kNeuronsInFlight * kSplits) {
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
    for (; j < k; j += kSplits) {
        const float hj = h[j];
        if (hj == 0.0f) continue;
        float v[U];
        load_elems<T, U>(w + (size_t)active[j] * row_bytes, c, v);
#pragma unroll
        for (int e = 0; e < U; e++) acc[e] += hj * v[e];
    }
    float* out = part + (int64_t)blockIdx.y * dim + c;
#pragma unroll
    for (int e = 0; e < U; e++) out[e] = acc[e];
}

// y[c] = sum of the kSplits partials in a fixed order: warp w of a block adds partials w, w + kReduceWarps, ... of
// the block's 32 columns (one per lane), then the warps' sums are added in warp order. Each thread has
// kSplits / kReduceWarps loads to wait for rather than kSplits.
constexpr int kReduceWarps = 8;
__global__ void __launch_bounds__(32 * kReduceWarps)
    down_reduce_kernel(const float* __restrict__ part, float* __restrict__ y, int64_t dim) {
    __shared__ float sums[kReduceWarps][32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t c = (int64_t)blockIdx.x * 32 + lane;
    float s = 0.0f;
    if (c < dim) {
#pragma unroll
        for (int i = warp; i < kSplits; i += kReduceWarps) s += part[(int64_t)i * dim + c];
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
    if constexpr (dtype_is_quant(T)) {
        const size_t rb = dtype_row_bytes(T, w.dim);
        if (quant_rows_tileable(w.w_gate, rb) && quant_rows_tileable(w.w_up, rb)) {
            gate_up_kernel<T, U, true><<<(unsigned)blocks, kThreads, 0, stream>>>(
                static_cast<const uint8_t*>(w.w_gate), static_cast<const uint8_t*>(w.w_up), xq, active, k, h, w.dim,
                rb, w.act);
            CUDA_CHECK_LAUNCH();
            return;
        }
    }
    gate_up_kernel<T, U, false><<<(unsigned)blocks, kThreads, 0, stream>>>(static_cast<const uint8_t*>(w.w_gate),
                                                                    static_cast<const uint8_t*>(w.w_up), xq, active, k,
                                                                    h, w.dim, dtype_row_bytes(T, w.dim), w.act);
    CUDA_CHECK_LAUNCH();
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
    const dim3 grid((unsigned)((dim + cols_per_block - 1) / cols_per_block), kSplits);
    down_partial_kernel<T, U><<<grid, kThreads, 0, stream>>>(static_cast<const uint8_t*>(w), h, active, k, scratch, dim,
                                                             dtype_row_bytes(T, dim));
    CUDA_CHECK_LAUNCH();
    down_reduce_kernel<<<(unsigned)((dim + 31) / 32), 32 * kReduceWarps, 0, stream>>>(scratch, y, dim);
    CUDA_CHECK_LAUNCH();
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

size_t sparse_down_scratch_floats(int64_t dim) { return (size_t)kSplits * (size_t)dim; }

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
