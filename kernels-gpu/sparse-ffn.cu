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
// positive. Rows of any type through row_dot_partial: F32 rows, and the others where gate_up_tiles_kernel cannot take
// them (rows not 16-byte aligned or not a multiple of 16 bytes long).
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

// ---- Gate/up rows through a cp.async pipeline ----
// Q8_0/Q4_0 rows that can be tiled (rows_tileable) and 16-byte aligned F16/BF16 rows stream through shared
// memory a tile at a time, NS tiles per warp: NS - 1 tiles' copies are in flight while the warp sums one. The warp's
// tiles follow its neurons' rows in order, gate row then up row; the up row's first tiles are fetched before the
// gate's sum is known, as if the neuron fired. Where a ReLU gate turns out not positive, those copies are waited for
// and dropped, and the pipeline restarts at the next neuron's gate row.
constexpr int kFloatTileVecs = 128;  // F16/BF16 tiles: 128 16-byte units of 8 elements (2 KiB), 4 a lane

// Two stages: deeper pipelines took more shared memory and registers, hence fewer warps an SM, and lost
// (ember-gpu-bench --only sparse --active 0.15, H200, 70B / 7B shapes, us, for 2, 3 and 4 stages: F16 57.4 / 14.7,
// 68.5 / 14.8, 69.1 / 17.1; Q8_0 30.5 / 9.4, 33.9 / 9.6, 27.9 / 10.7; Q4_0 26.0 / 7.9, 26.3 / 8.1, 28.2 / 8.1).
constexpr int kGateUpStages = 2;

template <DType T>
struct GateUpTile {
    static constexpr bool kQuant = dtype_is_quant(T);
    using Q = QuantStages<T, kQuantStageBlocks>;
    static constexpr int kVecs = kQuant ? Q::kVecs : kFloatTileVecs;  // a stage's 16-byte vectors
    static constexpr int kElems = kQuant ? kQuantStageBlocks * QK8_0 : kFloatTileVecs * kUnit;
    static constexpr int kBytes = kQuant ? kQuantStageBlocks * Q::kBlockBytes : kFloatTileVecs * 16;
};

// Tile t (n_vecs vectors) of a float row, summed into acc: lane l takes units l, l + 32, ... of the tile, so it adds
// the same units of the row in the same order as row_dot_partial<T, kUnit, 32>.
template <DType T>
__device__ __forceinline__ void tile_dot_float(const uint4* tile, int n_vecs, int64_t e0, const float* __restrict__ x,
                                               int lane, float& acc) {
#pragma unroll
    for (int m = 0; m < kFloatTileVecs / 32; m++) {
        const int v = lane + 32 * m;
        if (v < n_vecs) {
            float w[kUnit];
            load_elems<T, kUnit>(reinterpret_cast<const uint8_t*>(tile), (int64_t)v * kUnit, w);
            const float4* xp = reinterpret_cast<const float4*>(x + e0 + (int64_t)v * kUnit);
            const float4 a = xp[0], b = xp[1];
            acc += w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w;
            acc += w[4] * b.x + w[5] * b.y + w[6] * b.z + w[7] * b.w;
        }
    }
}

template <DType T, int NS>
__global__ void __launch_bounds__(kThreads)
    gate_up_tiles_kernel(const uint8_t* __restrict__ gate, const uint8_t* __restrict__ up, const void* __restrict__ xq,
                         const int32_t* __restrict__ active, const int32_t* __restrict__ k_dev, float* __restrict__ h,
                         int64_t dim, size_t row_bytes, SparseAct act) {
    wait_for_previous_kernel();
    release_next_kernel();
    using Tl = GateUpTile<T>;
    __shared__ uint4 stages[kWarps][NS][Tl::kVecs];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int k = *k_dev;
    const int n_tiles = (int)((dim + Tl::kElems - 1) / Tl::kElems);
    const int stride = (int)gridDim.x * kWarps;
    struct Cursor {
        int j;     // the neuron's place in the list
        int part;  // 0: its gate row, 1: its up row
        int t;     // the tile of that row
    };
    auto advance = [&](Cursor& c) {
        if (++c.t < n_tiles) return;
        c.t = 0;
        if (c.part == 0) {
            c.part = 1;
        } else {
            c.part = 0;
            c.j += stride;
        }
    };
    // The copy of tile c into stage s; commits a group either way, so that every stage is one group.
    auto issue = [&](const Cursor& c, int s) {
        if (c.j < k) {
            const size_t at = (size_t)c.t * Tl::kBytes;
            const uint8_t* src = (c.part == 0 ? gate : up) + (size_t)active[c.j] * row_bytes + at;
            const int n_vecs = (int)(min((size_t)Tl::kBytes, row_bytes - at) / 16);
            for (int i = lane; i < n_vecs; i += 32) cp_async16(&stages[warp][s][i], src + 16 * i);
        }
        cp_async_commit();
    };
    Cursor c{(int)blockIdx.x * kWarps + warp, 0, 0};  // the tile summed next, in stage sc
    Cursor in = c;                                    // the tile copied next, into stage si
    int sc = 0, si = 0;
    auto fill = [&]() {  // the first NS - 1 tiles from c on
        in = c;
        si = sc;
        for (int i = 0; i < NS - 1; i++) {
            issue(in, si);
            advance(in);
            si = (si + 1) % NS;
        }
    };
    fill();
    float acc = 0.0f, g = 0.0f;
    while (c.j < k) {  // uniform per warp
        issue(in, si);
        advance(in);
        si = (si + 1) % NS;
        cp_async_wait<NS - 1>();  // the oldest group, tile c's, has landed
        __syncwarp();
        if constexpr (Tl::kQuant) {
            const int64_t n_blocks = dim / QK8_0, b0 = (int64_t)c.t * kQuantStageBlocks;
            const int nb = (int)min((int64_t)kQuantStageBlocks, n_blocks - b0);
            const int8_t* xqs = static_cast<const int8_t*>(xq);
            acc += tile_dot_quant<T, kQuantStageBlocks>(stages[warp][sc], nb, b0, xqs,
                                                        reinterpret_cast<const float*>(xqs + dim), lane);
        } else {
            const int64_t e0 = (int64_t)c.t * Tl::kElems;
            tile_dot_float<T>(stages[warp][sc], (int)(min((int64_t)Tl::kElems, dim - e0) / kUnit), e0,
                              static_cast<const float*>(xq), lane, acc);
        }
        __syncwarp();  // every lane is done with stage sc before it is refilled
        sc = (sc + 1) % NS;
        if (++c.t < n_tiles) continue;
        const float sum = warp_sum(acc);  // the same in every lane: the warp takes the branches together
        acc = 0.0f;
        c.t = 0;
        if (c.part == 0) {
            g = sum;
            if (act != SparseAct::SPARSE_ACT_RELU || g > 0.0f) {
                c.part = 1;  // its first tiles are on their way
                continue;
            }
            if (lane == 0) h[c.j] = 0.0f;
            c.j += stride;
            cp_async_wait<0>();  // the up tiles no one needs have landed: drop them
            __syncwarp();
            fill();
        } else {
            const float out = act == SparseAct::SPARSE_ACT_RELU ? g * sum : g / (1.0f + expf(-g)) * sum;
            if (lane == 0) h[c.j] = out;
            c.part = 0;
            c.j += stride;  // its first gate tiles are on their way
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

// y[c] = sum of the n_parts partials in a fixed order: warp w of a block adds partials w, w + kReduceWarps, ... of
// the block's 32 columns (one per lane), then the warps' sums are added in warp order. Each thread has
// n_parts / kReduceWarps loads to wait for rather than n_parts.
constexpr int kReduceWarps = 8;
__global__ void __launch_bounds__(32 * kReduceWarps)
    down_reduce_kernel(const float* __restrict__ part, float* __restrict__ y, int64_t dim, int n_parts) {
    wait_for_previous_kernel();
    release_next_kernel();
    __shared__ float sums[kReduceWarps][32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t c = (int64_t)blockIdx.x * 32 + lane;
    float s = 0.0f;
    if (c < dim) {
#pragma unroll
        for (int i = warp; i < n_parts; i += kReduceWarps) s += part[(int64_t)i * dim + c];
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

// ---- Down projection in column slices ----
// Block (slice s, part p): the part's share of the list, [k p / P, k (p + 1) / P), through a kSliceStages-deep
// cp.async pipeline of R rows a stage, each row's bytes of the slice (SliceShape's units of 32 elements: 64 quant
// blocks, 1152 bytes of Q4_0 and 2176 of Q8_0; 32 units, 2048 bytes of F16) copied 16 bytes at a time. Thread (u, g)
// owns unit u of the slice, so it keeps that unit's 32 sums in registers for every row its group g takes (rows g,
// g + kSliceGroups, ... of each stage); the groups' sums are then added in group order, and part[p] gets the slice.
// The per-thread loads of down_partial_kernel (8 elements a thread; 2 bytes at a time of a quant block) kept it at
// 15 % of peak (ember-gpu-bench, 70B shape, Q4_0, H200); this kernel reaches 25 % there, bound by its arithmetic
// (ncu: SM pipes 52 % busy, DRAM 20 %, 14 warps an SM).
constexpr int kSliceGroups = 4;     // groups of threads taking alternate rows of a stage
constexpr int kSliceStages = 4;     // pipeline depth: three stages' copies in flight while one is summed
constexpr int kMaxSliceParts = 64;  // parts of the list at most: sparse_down_scratch_floats holds their slices
constexpr int kSliceWindow = 512;   // rows of a part whose indices and h are staged in shared memory at a time

// A type's slice: its 32-element units, their bytes, and the rows of a stage (about 8-9 KiB, so that the stages stay
// within the 48 KiB of a plain launch).
template <DType T>
struct SliceShape {
    static constexpr bool kQuant = T == DType::DTYPE_Q8_0 || T == DType::DTYPE_Q4_0;
    static constexpr int kUnits = kQuant ? 64 : 32;  // also the threads of a group
    static constexpr int kUnitBytes = T == DType::DTYPE_Q8_0   ? (int)sizeof(block_q8_0)
                                      : T == DType::DTYPE_Q4_0 ? (int)sizeof(block_q4_0)
                                      : T == DType::DTYPE_F32  ? 128
                                                               : 64;
    static constexpr int kRows = T == DType::DTYPE_Q4_0 ? 8 : T == DType::DTYPE_F32 ? 2 : 4;
    static constexpr int kStageBytes = kRows * kUnits * kUnitBytes;
    // + 16: a quant block's last word may be read one word past its stage's last row
    static constexpr size_t kSmemBytes = (size_t)kSliceStages * kStageBytes + 16;
};

// Byte i of w as the float (byte - bias), exactly: a byte permute puts it in the low mantissa bits of 2^23, and
// bias_2p23 (2^23 + bias) is taken off. Three instructions an element with the multiply-add, where a conversion from
// int runs at a quarter of the FMA rate.
__device__ __forceinline__ float byte_as_float(uint32_t w, int i, float bias_2p23) {
    return __uint_as_float(__byte_perm(w, 0x4b000000u, 0x7540u + (unsigned)i)) - bias_2p23;
}

// acc[e] += s * q_e for the 32 quants q_e of the Q8_0/Q4_0 block at byte o of shared memory (o even): s is h times
// the block's scale, q_e its signed quant (Q4_0: nibble - 8).
template <DType T>
__device__ __forceinline__ void add_block_scaled(const uint8_t* smem, int o, float h, float (&acc)[32]) {
    const float s = h * fp16_bits_to_f32(*reinterpret_cast<const uint16_t*>(smem + o));
    const int qo = o + 2;
    const uint32_t* p = reinterpret_cast<const uint32_t*>(smem + (qo & ~3));
    const int sh = (qo & 3) * 8;
    if constexpr (T == DType::DTYPE_Q8_0) {
        uint32_t w[9];
        load_quant_words<8>(p, w);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const uint32_t q = __funnelshift_r(w[i], w[i + 1], sh) ^ 0x80808080u;  // signed byte + 128
#pragma unroll
            for (int b = 0; b < 4; b++) acc[4 * i + b] = fmaf(s, byte_as_float(q, b, 8388736.0f), acc[4 * i + b]);
        }
    } else {
        uint32_t w[5];
        load_quant_words<4>(p, w);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            // Elements 0..15 are the low nibbles of the 16 bytes, elements 16..31 their high nibbles.
            const uint32_t q = __funnelshift_r(w[i], w[i + 1], sh);
            const uint32_t lo = q & 0x0f0f0f0fu, hi = (q >> 4) & 0x0f0f0f0fu;
#pragma unroll
            for (int b = 0; b < 4; b++) {
                acc[4 * i + b] = fmaf(s, byte_as_float(lo, b, 8388616.0f), acc[4 * i + b]);
                acc[16 + 4 * i + b] = fmaf(s, byte_as_float(hi, b, 8388616.0f), acc[16 + 4 * i + b]);
            }
        }
    }
}

// acc[e] += h * x_e for the 32 elements x_e of an F32/F16/BF16 unit at byte o of shared memory (16-byte aligned).
template <DType T>
__device__ __forceinline__ void add_unit(const uint8_t* smem, int o, float h, float (&acc)[32]) {
    const uint4* p = reinterpret_cast<const uint4*>(smem + o);
#pragma unroll
    for (int q = 0; q < 32 / kUnit; q++) {
        float v[kUnit];
        load_elems<T, kUnit>(reinterpret_cast<const uint8_t*>(p), (int64_t)q * kUnit, v);
#pragma unroll
        for (int e = 0; e < kUnit; e++) acc[q * kUnit + e] = fmaf(h, v[e], acc[q * kUnit + e]);
    }
}

template <DType T>
__global__ void __launch_bounds__(SliceShape<T>::kUnits * kSliceGroups, 2)
    down_slices_kernel(const uint8_t* __restrict__ w, const float* __restrict__ h, const int32_t* __restrict__ active,
                       const int32_t* __restrict__ k_dev, float* __restrict__ part, int64_t dim, size_t row_bytes) {
    wait_for_previous_kernel();
    release_next_kernel();
    using S = SliceShape<T>;
    constexpr int R = S::kRows, BB = S::kUnitBytes, kUnits = S::kUnits, kStageBytes = S::kStageBytes;
    constexpr int kThreadsPerBlock = kUnits * kSliceGroups;
    constexpr int kCopies = (kStageBytes / 16 + kThreadsPerBlock - 1) / kThreadsPerBlock;  // per thread
    extern __shared__ __align__(16) uint8_t smem[];
    // The window's rows, read once: a row's index (-1 where h is 0, a row not read) and its h. Without them each
    // stage's copies waited on loads of h and the list.
    __shared__ int32_t win_rows[kSliceWindow];
    __shared__ float win_h[kSliceWindow];
    const int b = threadIdx.x, g = threadIdx.y, tid = g * kUnits + b;
    const int n_units = (int)(dim / 32);
    const int first = blockIdx.x * kUnits;         // the slice's first unit
    const int nb = min(kUnits, n_units - first);   // its units (quant: a multiple of 8 in rows of 16-byte multiples)
    const int seg_vecs = nb * BB / 16, seg_bytes = nb * BB;  // a row's bytes of the slice
    const size_t slice_off = (size_t)first * BB;
    // This thread's copies of a stage: 16 bytes v of the slice of stage row r.
    int copy_r[kCopies], copy_v[kCopies];
#pragma unroll
    for (int c = 0; c < kCopies; c++) {
        const int i = tid + c * kThreadsPerBlock;
        copy_r[c] = i < R * seg_vecs ? i / seg_vecs : R;  // R: no copy
        copy_v[c] = i - copy_r[c] * seg_vecs;
    }
    float acc[32];
#pragma unroll
    for (int e = 0; e < 32; e++) acc[e] = 0.0f;
    const int64_t k = *k_dev, P = gridDim.y;
    const int64_t j0 = k * blockIdx.y / P, j1 = k * (blockIdx.y + 1) / P;
    for (int64_t w0 = j0; w0 < j1; w0 += kSliceWindow) {
        const int n_rows = (int)min((int64_t)kSliceWindow, j1 - w0);
        __syncthreads();  // the last window's rows are no longer read
        for (int i = tid; i < n_rows; i += kThreadsPerBlock) {
            const float hj = h[w0 + i];
            win_h[i] = hj;
            win_rows[i] = hj != 0.0f ? active[w0 + i] : -1;
        }
        __syncthreads();
        const int n_stages = (n_rows + R - 1) / R;
        // Window rows [R stage, R stage + R) into stage buffer stage % kSliceStages.
        auto issue = [&](int stage) {
            if (stage < n_stages) {
                uint8_t* dst = smem + (stage % kSliceStages) * kStageBytes;
#pragma unroll
                for (int c = 0; c < kCopies; c++) {
                    const int r = stage * R + copy_r[c];
                    if (copy_r[c] < R && r < n_rows && win_rows[r] >= 0)
                        cp_async16(dst + copy_r[c] * seg_bytes + 16 * copy_v[c],
                                   w + (size_t)win_rows[r] * row_bytes + slice_off + 16 * copy_v[c]);
                }
            }
            cp_async_commit();
        };
#pragma unroll
        for (int st = 0; st < kSliceStages - 1; st++) issue(st);
        for (int st = 0; st < n_stages; st++) {
            issue(st + kSliceStages - 1);
            cp_async_wait<kSliceStages - 1>();  // stage st has landed (for this thread's copies)
            __syncthreads();                     // and for everyone's
            const uint8_t* src = smem + (st % kSliceStages) * kStageBytes;
            if (b < nb) {
                for (int r = g; r < R && st * R + r < n_rows; r += kSliceGroups) {
                    const float hj = win_h[st * R + r];
                    if (hj == 0.0f) continue;
                    if constexpr (S::kQuant)
                        add_block_scaled<T>(src, r * seg_bytes + b * BB, hj, acc);
                    else
                        add_unit<T>(src, r * seg_bytes + b * BB, hj, acc);
                }
            }
            __syncthreads();  // everyone is done with this buffer before it is refilled
        }
        cp_async_wait<0>();
    }
    // Groups 1.. leave their sums in shared memory (the stages are free now); group 0 adds them in group order.
    float* sums = reinterpret_cast<float*>(smem);  // [group - 1][e][b]
    if (g > 0) {
#pragma unroll
        for (int e = 0; e < 32; e++) sums[((g - 1) * 32 + e) * kUnits + b] = acc[e];
    }
    __syncthreads();
    if (g == 0 && b < nb) {
        for (int q = 0; q < kSliceGroups - 1; q++)
#pragma unroll
            for (int e = 0; e < 32; e++) acc[e] += sums[(q * 32 + e) * kUnits + b];
        float4* out = reinterpret_cast<float4*>(part + (int64_t)blockIdx.y * dim + (int64_t)(first + b) * 32);
#pragma unroll
        for (int e = 0; e < 8; e++) out[e] = make_float4(acc[4 * e], acc[4 * e + 1], acc[4 * e + 2], acc[4 * e + 3]);
    }
}

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
    constexpr bool tiles = dtype_is_quant(T) || T == DType::DTYPE_F16 || T == DType::DTYPE_BF16;
    if constexpr (tiles) {
        // Float rows also need x 16-byte aligned (tile_dot_float's float4 loads); quant rows read Q8_0 x by blocks.
        const bool x_ok = dtype_is_quant(T) || aligned16(xq);
        if (rows_tileable(gate, rb) && rows_tileable(up, rb) && x_ok && w.dim % kUnit == 0) {
            launch_chained(gate_up_tiles_kernel<T, kGateUpStages>, dim3((unsigned)blocks), dim3(kThreads), 0,
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
                   y, dim, kPartials);
}

// Rows of 32-element units, 16-byte aligned and a multiple of 16 bytes long, take the column slices (about two
// blocks per SM, at most kMaxSliceParts parts of the list: the parts depend on the device and the row length, not on
// k, so a device gives the same bits on every run); others the per-unit kernel.
template <DType T>
void down_rows(const void* w, const float* h, const int32_t* active, const int32_t* k, float* y, int64_t dim,
               float* scratch, cudaStream_t stream) {
    using S = SliceShape<T>;
    const size_t rb = dtype_row_bytes(T, dim);
    if (dim % 32 == 0 && rows_tileable(w, rb) && aligned16(scratch)) {
        const int64_t n_slices = (dim / 32 + S::kUnits - 1) / S::kUnits;
        const int64_t parts = std::clamp<int64_t>((2 * device_sm_count() + n_slices - 1) / n_slices, 1, kMaxSliceParts);
        launch_chained(down_slices_kernel<T>, dim3((unsigned)n_slices, (unsigned)parts), dim3(S::kUnits, kSliceGroups),
                       S::kSmemBytes, stream, static_cast<const uint8_t*>(w), h, active, k, scratch, dim, rb);
        launch_chained(down_reduce_kernel, dim3((unsigned)((dim + 31) / 32)), dim3(32 * kReduceWarps), 0, stream,
                       scratch, y, dim, (int)parts);
    } else if constexpr (S::kQuant) {
        launch_down<T, kUnit>(w, h, active, k, y, dim, scratch, stream);
    } else if (dim % kUnit == 0 && aligned16(w)) {
        launch_down<T, kUnit>(w, h, active, k, y, dim, scratch, stream);
    } else {
        launch_down<T, 1>(w, h, active, k, y, dim, scratch, stream);
    }
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

size_t sparse_down_scratch_floats(int64_t dim) { return (size_t)std::max(kPartials, kMaxSliceParts) * (size_t)dim; }

void sparse_down(DType wt, const void* w_down_t, const float* h, const int32_t* active, const int32_t* k, float* y,
                 int64_t dim, float* scratch, cudaStream_t stream) {
    if (dim <= 0) return;
    check_dim("gpu::sparse_down", wt, dim);
    switch (wt) {
        case DType::DTYPE_F32:
            return down_rows<DType::DTYPE_F32>(w_down_t, h, active, k, y, dim, scratch, stream);
        case DType::DTYPE_F16:
            return down_rows<DType::DTYPE_F16>(w_down_t, h, active, k, y, dim, scratch, stream);
        case DType::DTYPE_BF16:
            return down_rows<DType::DTYPE_BF16>(w_down_t, h, active, k, y, dim, scratch, stream);
        case DType::DTYPE_Q8_0:
            return down_rows<DType::DTYPE_Q8_0>(w_down_t, h, active, k, y, dim, scratch, stream);
        case DType::DTYPE_Q4_0:
            return down_rows<DType::DTYPE_Q4_0>(w_down_t, h, active, k, y, dim, scratch, stream);
    }
    throw Error("gpu::sparse_down: weight type " + std::to_string((uint32_t)wt) + " is not supported");
}

}  // namespace ember::gpu
