// GEMV (one token): y = W x. Decode reads every weight byte once, so the kernel is bandwidth-bound: each thread of a
// row's group streams 16-byte units, and the group's partial sums meet in warp shuffles (and shared memory).
// Q8_0/Q4_0 rows stream through cp.async pipelines in shared memory where their alignment allows: with each lane's
// activations held in registers where a warp's share of a row is 2 to 8 runs of 32 blocks, else in two-stage tiles
// (QuantStages); rows of up to 16 blocks go in runs of whole rows.
#include <algorithm>
#include <string>
#include <type_traits>

#include "engine/error.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot-device.cuh"
#include "kernels-gpu/launch.cuh"
#include "kernels-gpu/matmul.h"
#include "kernels-gpu/quantize-device.cuh"

namespace ember::gpu {

namespace {

constexpr int kThreads = 128;             // 4 warps per block
constexpr int64_t kFewRows = 1024;        // below this, a whole block per row keeps the GPU busy
constexpr int64_t kSplitRowsBelow = 4096;  // quantized rows: fewer than this share each row among 4 warps
constexpr int64_t kQ8HalfRowsBelow = 16384;  // Q8_0: 4096 rows up to this many share each row between 2 warps

// W warps per row (1 or 4), kThreads / (32 W) rows per block.
template <DType T, int U, int W>
__global__ void matvec_kernel(const uint8_t* __restrict__ w, const void* __restrict__ xq, float* __restrict__ y,
                              int64_t n_rows, int64_t n_cols, size_t row_bytes) {
    wait_for_previous_kernel();
    release_next_kernel();
    constexpr int G = 32 * W;
    const int g = threadIdx.x % G;
    const int64_t r = (int64_t)blockIdx.x * (kThreads / G) + threadIdx.x / G;
    float sum = r < n_rows ? row_dot_partial<T, U, G>(w + r * row_bytes, xq, n_cols, g) : 0.0f;
    sum = warp_sum(sum);  // no early return above: every lane takes part
    if constexpr (W > 1) {
        __shared__ float part[kThreads / 32];
        if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = sum;
        __syncthreads();
        if (g == 0) {
            sum = 0.0f;
            for (int i = 0; i < W; i++) sum += part[threadIdx.x / 32 + i];
        }
    }
    if (g == 0 && r < n_rows) y[r] = sum;
}

// Blocks of a row each of its W warps takes (the last warp's share may be shorter): multiples of 8 blocks, so that
// every share of a tileable row starts 16-byte aligned. The kernels and the host's choice of kernel use it alike.
__host__ __device__ constexpr int64_t warp_share_blocks(int64_t n_blocks, int W) {
    return ((n_blocks + W - 1) / W + 7) / 8 * 8;
}

// Row r's dot product from its W warps' sums (each a warp_sum; the row's warps are warp - warp % W onwards): y[r],
// added in warp order where W > 1. Every thread of the block calls it (the barriers), with r >= n_rows too.
template <int W>
__device__ __forceinline__ void store_row_sum(float sum, float* part, int warp, int lane, int64_t r, int64_t n_rows,
                                              float* __restrict__ y) {
    if constexpr (W == 1) {
        if (lane == 0 && r < n_rows) y[r] = sum;
    } else {
        if (lane == 0) part[warp] = sum;
        __syncthreads();
        if (warp % W == 0 && lane == 0 && r < n_rows) {
            float tot = 0.0f;
#pragma unroll
            for (int i = 0; i < W; i++) tot += part[warp + i];
            y[r] = tot;
        }
        __syncthreads();
    }
}

// Q8_0/Q4_0 rows through the cp.async pipeline (QuantStages): W warps per row (each a contiguous share of its
// blocks, split at multiples of 8 blocks), kThreads / (32 W) rows per block, the blocks striding over the rows. Each
// warp's sequence of tiles runs through two shared-memory stages, the next tile's copy in flight while the current
// one is summed, across row boundaries too.
template <DType T, int TB, int W>
__global__ void __launch_bounds__(kThreads)
    matvec_quant_async_kernel(const uint8_t* __restrict__ w, const void* __restrict__ xq, float* __restrict__ y,
                              int64_t n_rows, int64_t n_cols, size_t row_bytes) {
    wait_for_previous_kernel();
    release_next_kernel();
    using S = QuantStages<T, TB>;
    constexpr int kWarps = kThreads / 32, kRows = kWarps / W;
    __shared__ uint4 stages[kWarps][2][S::kVecs];
    __shared__ float part[kWarps];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int slot = warp / W, sub = warp % W;
    const int8_t* xqs = static_cast<const int8_t*>(xq);
    const float* xd = reinterpret_cast<const float*>(xqs + n_cols);
    const int64_t n_blocks = n_cols / QK8_0;
    const int64_t share = warp_share_blocks(n_blocks, W);
    const int64_t b_begin = min(n_blocks, sub * share), b_end = min(n_blocks, b_begin + share);
    const int n_tiles = (int)((b_end - b_begin + TB - 1) / TB);
    const int64_t step = (int64_t)gridDim.x * kRows;
    // Tile t of row r into stage s; commits a (possibly empty) group either way, so that waits count alike.
    auto issue = [&](int64_t r, int t, int s) {
        if (r < n_rows && t < n_tiles) {
            const int64_t b0 = b_begin + (int64_t)t * TB;
            stage_blocks_async<T, TB>(stages[warp][s], w + r * row_bytes + b0 * S::kBlockBytes,
                                      min((int64_t)TB, b_end - b0), lane);
        }
        cp_async_commit();
    };
    int s = 0;
    int64_t group = (int64_t)blockIdx.x * kRows;
    issue(group + slot, 0, 0);
    for (; group < n_rows; group += step) {  // uniform in the block
        const int64_t r = group + slot;
        float acc = 0.0f;
        for (int t = 0; t < n_tiles; t++) {
            if (t + 1 < n_tiles)
                issue(r, t + 1, s ^ 1);
            else
                issue(r + step, 0, s ^ 1);
            cp_async_wait<1>();  // this tile's group has landed
            __syncwarp();
            if (r < n_rows) {
                const int64_t b0 = b_begin + (int64_t)t * TB;
                acc += tile_dot_quant<T, TB>(stages[warp][s], (int)min((int64_t)TB, b_end - b0), b0, xqs, xd, lane);
            }
            __syncwarp();  // every lane is done with stage s before it is refilled
            s ^= 1;
        }
        store_row_sum<W>(warp_sum(acc), part, warp, lane, r, n_rows, y);
    }
    cp_async_wait<0>();
}

// Q8_0/Q4_0 rows split into W warps' shares (as the kernel above splits them: multiples of 8 blocks) of NB (2..8)
// runs of 32 blocks, the last run possibly partial: a lane takes block 32 i + lane of run i of its share, in every
// row, so it loads the activations of its NB blocks into registers once (for Q4_0 with each block's x_offset) and
// the runs' arithmetic reads only weights, from shared memory. The kernel above loads 32 activations a block from L1
// for every row: at the 70B shape in Q4_0 that traffic, twice the weights' bytes, held the L1 at 80-85 % and the
// GEMV at 50-67 % of peak (ncu). Runs stream through kXregStages shared-memory stages. Each lane adds its blocks in
// the order of the kernel above, two runs at a time (its 64-block tiles).
constexpr int kXregStages = 4;
constexpr int kXregMinRuns = 2, kXregMaxRuns = 8;

template <DType T, int NB, int W>
__global__ void __launch_bounds__(kThreads)
    matvec_quant_xreg_kernel(const uint8_t* __restrict__ w, const void* __restrict__ xq, float* __restrict__ y,
                             int64_t n_rows, int64_t n_cols, size_t row_bytes) {
    wait_for_previous_kernel();
    release_next_kernel();
    constexpr int BB = QuantStages<T, 32>::kBlockBytes;
    constexpr int kRunVecs = 32 * BB / 16;  // a run of 32 blocks is 576 (Q4_0) or 1088 bytes
    constexpr int kWarps = kThreads / 32, kRows = kWarps / W;
    __shared__ uint4 stages[kWarps][kXregStages][kRunVecs + 1];  // a spare vector: the last block's words read past
    __shared__ float part[kWarps];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int slot = warp / W, sub = warp % W;
    const int8_t* xqs = static_cast<const int8_t*>(xq);
    const float* xd = reinterpret_cast<const float*>(xqs + n_cols);
    const int n_blocks = (int)(n_cols / QK8_0);
    const int share = (int)warp_share_blocks(n_blocks, W);
    const int b_begin = min(n_blocks, sub * share), n_mine = min(n_blocks, b_begin + share) - b_begin;
    const int64_t step = (int64_t)gridDim.x * kRows;
    // Run i of row r into stage s; commits a (possibly empty) group either way. A partial run holds a multiple of 8
    // blocks (9 or 17 vectors each).
    auto issue = [&](int64_t r, int i, int s) {
        if (r < n_rows) {
            const uint8_t* src = w + r * row_bytes + (size_t)(b_begin + 32 * i) * BB;
            const int n_vecs = min(32, n_mine - 32 * i) * BB / 16;
#pragma unroll
            for (int k = 0; k < (kRunVecs + 31) / 32; k++) {
                const int v = lane + 32 * k;
                if (v < n_vecs) cp_async16(&stages[warp][s][v], src + 16 * v);
            }
        }
        cp_async_commit();
    };
    int64_t group = (int64_t)blockIdx.x * kRows;
#pragma unroll
    for (int q = 0; q < kXregStages - 1; q++) issue(group + slot + (q / NB) * step, q % NB, q);
    // The activations load while the first runs are in flight.
    int xs[NB][8], xo[NB];
    float xdv[NB];
#pragma unroll
    for (int i = 0; i < NB; i++) {
        const int j = 32 * i + lane;  // this lane's block of run i, within the share
        if (j < n_mine) {
            load_x_words(xqs + (int64_t)(b_begin + j) * QK8_0, xs[i]);
            xdv[i] = xd[b_begin + j];
        } else {
            for (int k = 0; k < 8; k++) xs[i][k] = 0;
            xdv[i] = 0.0f;
        }
        if constexpr (T == DType::DTYPE_Q4_0) xo[i] = x_offset(xs[i]);
    }
    int s = 0;
    for (; group < n_rows; group += step) {  // uniform in the block
        const int64_t r = group + slot;
        float acc = 0.0f, pair = 0.0f;
#pragma unroll
        for (int i = 0; i < NB; i++) {
            constexpr int kAhead = kXregStages - 1;
            const int sn = s + kAhead < kXregStages ? s + kAhead : s + kAhead - kXregStages;
            issue(r + ((i + kAhead) / NB) * step, (i + kAhead) % NB, sn);
            cp_async_wait<kAhead>();  // this run's group has landed
            __syncwarp();
            const uint8_t* t8 = reinterpret_cast<const uint8_t*>(stages[warp][s]);
            const int off = lane * BB + 2;
            const float dw = fp16_bits_to_f32(*reinterpret_cast<const uint16_t*>(t8 + lane * BB));
            const uint32_t* p = reinterpret_cast<const uint32_t*>(t8) + (off >> 2);
            int isum;
            if constexpr (T == DType::DTYPE_Q4_0)
                isum = q4_block_isum_offset(p, (off & 3) * 8, xs[i], xo[i]);
            else
                isum = q8_block_isum_regs(p, (off & 3) * 8, xs[i]);
            const float v = 32 * i + lane < n_mine ? dw * xdv[i] * (float)isum : 0.0f;
            if (i % 2 == 0) {
                pair = v;
                if (i + 1 == NB) acc += pair;
            } else {
                acc += pair + v;
            }
            __syncwarp();  // every lane is done with stage s before it is refilled
            s = s + 1 < kXregStages ? s + 1 : 0;
        }
        store_row_sum<W>(warp_sum(acc), part, warp, lane, r, n_rows, y);
    }
    cp_async_wait<0>();
}

// Short Q8_0/Q4_0 rows (at most kShortRowBlocks blocks: a predictor's fc2, whose rows are its rank), from any 2-byte
// aligned start: a warp takes runs of R = kRunBlocks / n_blocks whole rows, which lie back to back, so a run is one
// byte range. Its 16-byte vectors (from the range's start rounded down) go to shared memory with cp.async in two
// stages, the next run's copy in flight while this one is summed. Lanes take the run's blocks in turn, each
// block's product goes to a slot, and a lane then adds each of its rows' slots in block order.
// ember-gpu-bench --only matvec, H200: a 70B predictor's fc2 (28672 rows of 288 columns, Q8_0: 306-byte rows, no
// multiple of 16) 9.7 us per unit, 6.2 in runs (ncu: 11.8-12.5 against 8.1-8.7 us); a 13B's (13824 x 672, 21
// blocks) took as long either way (ncu: 9.1-9.2 against 9.1-9.6 us), so rows of more blocks keep the other paths.
constexpr int kShortRowBlocks = 16;
constexpr int kRunBlocks = 64;

// X: how xq holds the activations: XIN_Q8, prepared (dot_prepare_vec's layout); XIN_FLOATS / XIN_RELU_FLOATS, as
// n_blocks * 32 floats that every block quantizes into shared memory first (of max(x, 0) for the latter), with
// quantize_q8_kernel's arithmetic.
enum XIn { XIN_Q8, XIN_FLOATS, XIN_RELU_FLOATS };

template <DType T, XIn X>
__global__ void __launch_bounds__(kThreads)
    matvec_quant_short_kernel(const uint8_t* __restrict__ w, const void* __restrict__ xq, float* __restrict__ y,
                              int64_t n_rows, int n_blocks, size_t row_bytes) {
    wait_for_previous_kernel();
    release_next_kernel();
    constexpr int BB = QuantStages<T, kRunBlocks>::kBlockBytes;
    constexpr int kVecs = (kRunBlocks * BB + 15) / 16 + 2;  // the rounding down, and a block's last word read past
    constexpr int kWarps = kThreads / 32;
    __shared__ uint4 stages[kWarps][2][kVecs];
    __shared__ float part[kWarps][kRunBlocks];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int8_t* xqs = static_cast<const int8_t*>(xq);
    const float* xd = reinterpret_cast<const float*>(xqs + (int64_t)n_blocks * QK8_0);
    if constexpr (X != XIN_Q8) {
        __shared__ __align__(16) int8_t sq[kShortRowBlocks * QK8_0];
        __shared__ float sd[kShortRowBlocks];
        const float* xf = static_cast<const float*>(xq);
        for (int b = warp; b < n_blocks; b += kWarps) {
            float v = xf[b * QK8_0 + lane];
            if constexpr (X == XIN_RELU_FLOATS) v = v > 0.0f ? v : 0.0f;
            quantize_q8_block_warp(v, lane, sq + b * QK8_0, sd + b);
        }
        __syncthreads();
        xqs = sq;
        xd = sd;
    }
    const int R = kRunBlocks / n_blocks;
    const int64_t n_runs = (n_rows + R - 1) / R;
    const int64_t step = (int64_t)gridDim.x * kWarps;
    // Run u into stage s; returns where its first row lies in the stage (bytes). Commits a group either way.
    auto issue = [&](int64_t u, int s) -> int {
        int lead = 0;
        if (u < n_runs) {
            const uint8_t* begin = w + u * R * row_bytes;
            const uint8_t* end = begin + min((int64_t)R, n_rows - u * R) * row_bytes;
            const uint8_t* base = reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(begin) & ~(uintptr_t)15);
            lead = (int)(begin - base);
            const int n_vecs = (int)((end - base + 15) / 16);
            for (int i = lane; i < n_vecs; i += 32) cp_async16(&stages[warp][s][i], base + 16 * i);
        }
        cp_async_commit();
        return lead;
    };
    int s = 0;
    int64_t u = (int64_t)blockIdx.x * kWarps + warp;
    int lead = issue(u, 0);
    for (; u < n_runs; u += step) {
        const int next_lead = issue(u + step, s ^ 1);
        cp_async_wait<1>();  // this run's group has landed
        __syncwarp();
        const int rows = (int)min((int64_t)R, n_rows - u * R);
        const uint8_t* t8 = reinterpret_cast<const uint8_t*>(stages[warp][s]);
        const uint32_t* t32 = reinterpret_cast<const uint32_t*>(stages[warp][s]);
        for (int q = lane; q < rows * n_blocks; q += 32) {
            const int i = q / n_blocks, j = q - i * n_blocks;
            const int off = lead + i * (int)row_bytes + j * BB;
            const float dw = fp16_bits_to_f32(*reinterpret_cast<const uint16_t*>(t8 + off));
            const int isum = block_isum_words<T>(t32 + ((off + 2) >> 2), ((off + 2) & 3) * 8, xqs + j * QK8_0);
            part[warp][q] = dw * xd[j] * (float)isum;
        }
        __syncwarp();
        for (int i = lane; i < rows; i += 32) {
            float sum = 0.0f;
            for (int j = 0; j < n_blocks; j++) sum += part[warp][i * n_blocks + j];
            y[u * R + i] = sum;
        }
        __syncwarp();  // every lane is done with stage s and the slots before they are refilled
        s ^= 1;
        lead = next_lead;
    }
    cp_async_wait<0>();
}

// Blocks of kernel the device holds at once (its SMs times blocks per SM).
template <typename K>
int64_t resident_blocks(K kernel) {
    int per_sm = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
    return (int64_t)std::max(1, device_sm_count()) * std::max(1, per_sm);
}

// Blocks for a kernel of W warps a row: as many as the rows need, at most `resident` (they then stride over the rows).
template <int W>
int64_t row_blocks_grid(int64_t n_rows, int64_t resident) {
    constexpr int64_t kRows = kThreads / 32 / W;
    return std::min((n_rows + kRows - 1) / kRows, resident);
}

// Both launchers name their kernel in launch_chained, where the chained-launch source test finds it (its first
// statements must be the wait and the release).
template <DType T, int TB, int W>
void launch_quant_async(const uint8_t* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, size_t row_bytes,
                        cudaStream_t stream) {
    static const int64_t resident = resident_blocks(matvec_quant_async_kernel<T, TB, W>);
    const int64_t grid = row_blocks_grid<W>(n_rows, resident);
    launch_chained(matvec_quant_async_kernel<T, TB, W>, dim3((unsigned)grid), dim3(kThreads), 0, stream, w, xq, y,
                   n_rows, n_cols, row_bytes);
}

template <DType T, int NB, int W>
void launch_quant_xreg(const uint8_t* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, size_t row_bytes,
                       cudaStream_t stream) {
    static const int64_t resident = resident_blocks(matvec_quant_xreg_kernel<T, NB, W>);
    const int64_t grid = row_blocks_grid<W>(n_rows, resident);
    launch_chained(matvec_quant_xreg_kernel<T, NB, W>, dim3((unsigned)grid), dim3(kThreads), 0, stream, w, xq, y,
                   n_rows, n_cols, row_bytes);
}

template <DType T, int W>
bool launch_quant_xreg_runs(int64_t runs, const uint8_t* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols,
                            size_t row_bytes, cudaStream_t stream) {
    switch (runs) {
        case 2: launch_quant_xreg<T, 2, W>(w, xq, y, n_rows, n_cols, row_bytes, stream); return true;
        case 3: launch_quant_xreg<T, 3, W>(w, xq, y, n_rows, n_cols, row_bytes, stream); return true;
        case 4: launch_quant_xreg<T, 4, W>(w, xq, y, n_rows, n_cols, row_bytes, stream); return true;
        case 5: launch_quant_xreg<T, 5, W>(w, xq, y, n_rows, n_cols, row_bytes, stream); return true;
        case 6: launch_quant_xreg<T, 6, W>(w, xq, y, n_rows, n_cols, row_bytes, stream); return true;
        case 7: launch_quant_xreg<T, 7, W>(w, xq, y, n_rows, n_cols, row_bytes, stream); return true;
        case 8: launch_quant_xreg<T, 8, W>(w, xq, y, n_rows, n_cols, row_bytes, stream); return true;
        default: return false;
    }
}

// Rows through matvec_quant_xreg_kernel where W warps a row (at least w_min) split each row into shares of
// kXregMinRuns to kXregMaxRuns runs of 32 blocks (the last one possibly partial); false where none does.
template <DType T>
bool try_quant_xreg(int w_min, const uint8_t* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols,
                    size_t row_bytes, cudaStream_t stream) {
    const int64_t n_blocks = n_cols / QK8_0;
    for (int wp = w_min; wp <= 4; wp *= 2) {
        const int64_t runs = (warp_share_blocks(n_blocks, wp) + 31) / 32;
        if (runs > kXregMaxRuns) continue;
        if (runs < kXregMinRuns) return false;
        if (wp == 1) return launch_quant_xreg_runs<T, 1>(runs, w, xq, y, n_rows, n_cols, row_bytes, stream);
        if (wp == 2) return launch_quant_xreg_runs<T, 2>(runs, w, xq, y, n_rows, n_cols, row_bytes, stream);
        return launch_quant_xreg_runs<T, 4>(runs, w, xq, y, n_rows, n_cols, row_bytes, stream);
    }
    return false;
}

template <DType T, XIn X = XIN_Q8>
void launch_quant_short(const uint8_t* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, size_t row_bytes,
                        cudaStream_t stream) {
    static const int64_t resident = resident_blocks(matvec_quant_short_kernel<T, X>);
    const int n_blocks = (int)(n_cols / QK8_0);
    const int64_t rows_per_run = kRunBlocks / n_blocks;
    const int64_t runs = (n_rows + rows_per_run - 1) / rows_per_run;
    const int64_t grid = std::min((runs + kThreads / 32 - 1) / (kThreads / 32), resident);
    launch_chained(matvec_quant_short_kernel<T, X>, dim3((unsigned)grid), dim3(kThreads), 0, stream, w, xq, y, n_rows,
                   n_blocks, row_bytes);
}

// The short rows' test of launch below, for any type (false for the float ones).
bool short_quant_rows(DType wt, const void* w, int64_t n_cols) {
    return dtype_is_quant(wt) && n_cols > 0 && n_cols % QK8_0 == 0 && n_cols <= kShortRowBlocks * QK8_0 &&
           reinterpret_cast<uintptr_t>(w) % 2 == 0;
}

template <DType T, int U>
void launch(const void* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, cudaStream_t stream) {
    const size_t row_bytes = dtype_row_bytes(T, n_cols);
    const auto* wb = static_cast<const uint8_t*>(w);
    if constexpr (dtype_is_quant(T)) {
        if (short_quant_rows(T, w, n_cols)) {
            launch_quant_short<T>(wb, xq, y, n_rows, n_cols, row_bytes, stream);
            return;
        }
        if (rows_tileable(w, row_bytes)) {
            // ember-gpu-bench --shape 70b, H200: a row per warp for many rows; 4 warps a row below 4096 rows (k
            // and v of GQA: 1024 rows left most warps idle); 2 for rows over 3 times longer than their count. Q8_0
            // rows, twice Q4_0's bytes a block, gain from 2 warps a row up to 16384 rows (--shape 7b: 11008x4096
            // 17.2 -> 15.6 us, 4096x11008 18.6 -> 15.7, 4096x4096 9.1 -> 8.4); Q4_0 rows lost 6-7 % at 11008x4096
            // and 4096x4096.
            int w_min = 1;
            if (n_rows < kSplitRowsBelow)
                w_min = 4;
            else if (n_cols >= 3 * n_rows || (T == DType::DTYPE_Q8_0 && n_rows < kQ8HalfRowsBelow))
                w_min = 2;
            if (try_quant_xreg<T>(w_min, wb, xq, y, n_rows, n_cols, row_bytes, stream)) return;
            if (w_min == 4)
                launch_quant_async<T, kQuantStageBlocks, 4>(wb, xq, y, n_rows, n_cols, row_bytes, stream);
            else if (w_min == 2)
                launch_quant_async<T, kQuantStageBlocks, 2>(wb, xq, y, n_rows, n_cols, row_bytes, stream);
            else
                launch_quant_async<T, kQuantStageBlocks, 1>(wb, xq, y, n_rows, n_cols, row_bytes, stream);
            return;
        }
    }
    if (n_rows < kFewRows) {
        launch_chained(matvec_kernel<T, U, 4>, dim3((unsigned)n_rows), dim3(kThreads), 0, stream, wb, xq, y, n_rows,
                       n_cols, row_bytes);
    } else {
        const int64_t rows_per_block = kThreads / 32;
        const int64_t grid = (n_rows + rows_per_block - 1) / rows_per_block;
        launch_chained(matvec_kernel<T, U, 1>, dim3((unsigned)grid), dim3(kThreads), 0, stream, wb, xq, y, n_rows,
                       n_cols, row_bytes);
    }
}

// F32/F16/BF16: 16-byte units when every row and x allow them, else one element per thread step.
template <DType T>
void launch_float(const void* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, cudaStream_t stream) {
    if (n_cols % kUnit == 0 && aligned16(w) && aligned16(xq))
        launch<T, kUnit>(w, xq, y, n_rows, n_cols, stream);
    else
        launch<T, 1>(w, xq, y, n_rows, n_cols, stream);
}

}  // namespace

void matvec(DType wt, const void* w, const void* xq, float* y, int64_t n_rows, int64_t n_cols, cudaStream_t stream) {
    if (n_rows <= 0) return;
    if (n_cols % dtype_block_elems(wt) != 0)
        throw Error(std::string("gpu::matvec: ") + dtype_name(wt) + " rows of " + std::to_string(n_cols) +
                    " columns, expected a multiple of " + std::to_string(dtype_block_elems(wt)));
    switch (wt) {
        case DType::DTYPE_F32:
            return launch_float<DType::DTYPE_F32>(w, xq, y, n_rows, n_cols, stream);
        case DType::DTYPE_F16:
            return launch_float<DType::DTYPE_F16>(w, xq, y, n_rows, n_cols, stream);
        case DType::DTYPE_BF16:
            return launch_float<DType::DTYPE_BF16>(w, xq, y, n_rows, n_cols, stream);
        case DType::DTYPE_Q8_0:
            return launch<DType::DTYPE_Q8_0, kUnit>(w, xq, y, n_rows, n_cols, stream);
        case DType::DTYPE_Q4_0:
            return launch<DType::DTYPE_Q4_0, kUnit>(w, xq, y, n_rows, n_cols, stream);
    }
    throw Error("gpu::matvec: weight type " + std::to_string((uint32_t)wt) +
                " is not supported, expected f32, f16, bf16, q8_0 or q4_0");
}

bool matvec_quantizes_floats(DType wt, const void* w, int64_t n_cols) { return short_quant_rows(wt, w, n_cols); }

void matvec_from_floats(DType wt, const void* w, const float* x, bool relu, float* y, int64_t n_rows, int64_t n_cols,
                        cudaStream_t stream) {
    if (!short_quant_rows(wt, w, n_cols))
        throw Error(std::string("gpu::matvec_from_floats: ") + dtype_name(wt) + " rows of " + std::to_string(n_cols) +
                    " columns, expected Q8_0 or Q4_0 rows of a multiple of 32 up to " +
                    std::to_string(kShortRowBlocks * QK8_0) + " columns from a 2-byte aligned start");
    if (n_rows <= 0) return;
    const auto* wb = static_cast<const uint8_t*>(w);
    const size_t row_bytes = dtype_row_bytes(wt, n_cols);
    auto go = [&](auto x_in) {
        constexpr XIn X = decltype(x_in)::value;
        if (wt == DType::DTYPE_Q8_0)
            launch_quant_short<DType::DTYPE_Q8_0, X>(wb, x, y, n_rows, n_cols, row_bytes, stream);
        else
            launch_quant_short<DType::DTYPE_Q4_0, X>(wb, x, y, n_rows, n_cols, row_bytes, stream);
    };
    if (relu)
        go(std::integral_constant<XIn, XIN_RELU_FLOATS>());
    else
        go(std::integral_constant<XIn, XIN_FLOATS>());
}

}  // namespace ember::gpu
