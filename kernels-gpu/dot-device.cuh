// Device-side dot products of one weight row with a prepared activation vector (layout in kernels-gpu/dot.h),
// spread over a group of G threads; shared by matvec and sparse_gate_up.
#pragma once
#include "kernels-gpu/dtype-device.cuh"
#include "kernels-gpu/launch.cuh"

namespace ember::gpu {

__host__ __device__ constexpr bool dtype_is_quant(DType t) { return t == DType::DTYPE_Q8_0 || t == DType::DTYPE_Q4_0; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// One unit (8 elements at c, c % 8 == 0) of a Q8_0/Q4_0 row against Q8 activations: an integer sum of 8 products
// (two dp4a), scaled by d_w * d_x as kernels-cpu's dot_quant scales a block.
template <DType T>
__device__ __forceinline__ float unit_dot_q8(const uint8_t* __restrict__ row, const int8_t* __restrict__ xqs,
                                             const float* __restrict__ xd, int64_t c) {
    const int e = (int)(c % QK8_0);  // QK8_0 == QK4_0
    const int2 xv = *reinterpret_cast<const int2*>(xqs + c);
    int w0, w1;
    float dw;
    if constexpr (T == DType::DTYPE_Q8_0) {
        const uint8_t* blk = row + (c / QK8_0) * sizeof(block_q8_0);
        dw = fp16_bits_to_f32(*reinterpret_cast<const uint16_t*>(blk));
        w0 = load_int_a2(blk + 2 + e);
        w1 = load_int_a2(blk + 6 + e);
    } else {
        // Elements 0..15 are the low nibbles of bytes 0..15, elements 16..31 their high nibbles; value = nibble - 8.
        const uint8_t* blk = row + (c / QK4_0) * sizeof(block_q4_0);
        dw = fp16_bits_to_f32(*reinterpret_cast<const uint16_t*>(blk));
        const int shift = e < 16 ? 0 : 4;
        const unsigned n0 = ((unsigned)load_int_a2(blk + 2 + e % 16) >> shift) & 0x0f0f0f0fu;
        const unsigned n1 = ((unsigned)load_int_a2(blk + 6 + e % 16) >> shift) & 0x0f0f0f0fu;
        w0 = (int)__vsub4(n0, 0x08080808u);  // per byte, wrapping: the signed int8 nibble - 8
        w1 = (int)__vsub4(n1, 0x08080808u);
    }
    const int isum = __dp4a(w1, xv.y, __dp4a(w0, xv.x, 0));
    return dw * xd[c / QK8_0] * (float)isum;
}

// Partial dot of row (n elements of type T) with prepared xq, over the units g, g + G, g + 2G, ...; the G partial
// sums add up to the row's dot product. U: 8 (units; n % 8 == 0, float rows and x 16-byte aligned) or 1 (F32, F16,
// BF16 only).
template <DType T, int U, int G>
__device__ __forceinline__ float row_dot_partial(const uint8_t* __restrict__ row, const void* __restrict__ xq,
                                                 int64_t n, int g) {
    float acc = 0.0f;
    const int64_t n_units = n / U;
    if constexpr (dtype_is_quant(T)) {
        static_assert(U == kUnit, "quantized rows are read by units");
        const int8_t* xqs = static_cast<const int8_t*>(xq);
        const float* xd = reinterpret_cast<const float*>(static_cast<const uint8_t*>(xq) + n);
#pragma unroll 4
        for (int64_t u = g; u < n_units; u += G) acc += unit_dot_q8<T>(row, xqs, xd, u * U);
    } else {
        const float* x = static_cast<const float*>(xq);
#pragma unroll 4
        for (int64_t u = g; u < n_units; u += G) {
            float v[U];
            load_elems<T, U>(row, u * U, v);
            if constexpr (U == 1) {
                acc += v[0] * x[u];
            } else {
                const float4* xp = reinterpret_cast<const float4*>(x + u * U);
                const float4 a = xp[0], b = xp[1];
                acc += v[0] * a.x + v[1] * a.y + v[2] * a.z + v[3] * a.w;
                acc += v[4] * b.x + v[5] * b.y + v[6] * b.z + v[7] * b.w;
            }
        }
    }
    return acc;
}

// Rows of any type that can go through shared memory 16 bytes at a time (QuantStages below, the sparse gate/up's
// tiles): 16-byte aligned, their length in bytes a multiple of 16.
__host__ __device__ inline bool rows_tileable(const void* w, size_t row_bytes) {
    return aligned16(w) && row_bytes % 16 == 0;
}

// ---- Quantized rows through a two-stage cp.async pipeline ----
// A Q8_0/Q4_0 block is 34/18 bytes, so a lane reading its own blocks from global memory can only use 2-byte loads.
// Instead a warp streams its rows' blocks a tile of TB blocks at a time from global into its own shared memory with
// cp.async (coalesced 16-byte copies, no registers on the way, so more warps fit an SM) while it computes the tile
// before from there: the next tile's loads are in flight during each tile's arithmetic. Needs 16-byte aligned rows whose length in bytes is
// a multiple of 16 (rows_tileable), which makes every 8th block 16-byte aligned.
template <DType T, int TB>
struct QuantStages {
    static constexpr int kBlockBytes = T == DType::DTYPE_Q8_0 ? (int)sizeof(block_q8_0) : (int)sizeof(block_q4_0);
    static_assert(TB % 32 == 0, "a tile gives each lane the same number of blocks");
    static constexpr int kVecs = TB * kBlockBytes / 16 + 1;  // one spare vector: a block's last word may read past
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Q8_0/Q4_0 blocks per pipeline stage of the GEMV and the sparse gate/up (ember-gpu-bench, H200: 64 beat 128).
constexpr int kQuantStageBlocks = 64;

// A warp's copy of n_blocks (<= TB) blocks at src (16-byte aligned) into a stage: 16 bytes a lane at a time.
template <DType T, int TB>
__device__ __forceinline__ void stage_blocks_async(uint4* stage, const uint8_t* src, int64_t n_blocks, int lane) {
    const int n_vecs = (int)(n_blocks * QuantStages<T, TB>::kBlockBytes / 16);
    for (int i = lane; i < n_vecs; i += 32) cp_async16(&stage[i], src + 16 * i);
}

// Until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Per byte: a nibble n (0..15, in the low 4 bits of each byte of v) as the signed byte n - 8, with no borrow between
// bytes ((n | 0x80) - 8 stays within 0x78..0x87; the xor restores the sign bit).
__device__ __forceinline__ int nibbles_minus_8(unsigned v) {
    return (int)(((v | 0x80808080u) - 0x08080808u) ^ 0x80808080u);
}

// A Q8_0/Q4_0 block's quants as 32-bit words from shared memory: they start at byte 4 * p + sh / 8 of the words at p
// (sh 0 or 16), so quant word i of the N + 1 words loaded here is __funnelshift_r(w[i], w[i + 1], sh), for N = 8 (Q8_0)
// or 4 (Q4_0).
template <int N>
__device__ __forceinline__ void load_quant_words(const uint32_t* p, uint32_t (&w)[N + 1]) {
#pragma unroll
    for (int i = 0; i <= N; i++) w[i] = p[i];
}

// The integer dot product of one Q8_0/Q4_0 block's quants (load_quant_words) with 32 int8 activations (16-byte
// aligned).
template <DType T>
__device__ __forceinline__ int block_isum_words(const uint32_t* p, int sh, const int8_t* __restrict__ x) {
    const int4 xa = *reinterpret_cast<const int4*>(x), xb = *reinterpret_cast<const int4*>(x + 16);
    const int xs[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
    int s = 0;
    if constexpr (T == DType::DTYPE_Q8_0) {
        uint32_t w[9];
        load_quant_words<8>(p, w);
#pragma unroll
        for (int i = 0; i < 8; i++) s = __dp4a((int)__funnelshift_r(w[i], w[i + 1], sh), xs[i], s);
    } else {
        uint32_t w[5];
        load_quant_words<4>(p, w);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const unsigned q = __funnelshift_r(w[i], w[i + 1], sh);
            s = __dp4a(nibbles_minus_8(q & 0x0f0f0f0fu), xs[i], s);
            s = __dp4a(nibbles_minus_8((q >> 4) & 0x0f0f0f0fu), xs[4 + i], s);
        }
    }
    return s;
}

// A Q4_0 block's integer sum against Q8 activations, sum((n - 8) x) over its 32 nibbles n, is also sum(n x) - 8
// sum(x), exactly in int32. Where a lane keeps a block's activations in registers for many rows, it keeps the second
// term too (x_offset), and the raw nibbles (0..15, valid signed bytes) go to dp4a as they are: per word of quants a
// funnel shift, two masks and two dp4a, where re-signing the nibbles (nibbles_minus_8) takes six more.

// 32 int8 activations at x (16-byte aligned) as 8 words.
__device__ __forceinline__ void load_x_words(const int8_t* __restrict__ x, int (&xs)[8]) {
    const int4 xa = *reinterpret_cast<const int4*>(x), xb = *reinterpret_cast<const int4*>(x + 16);
    xs[0] = xa.x, xs[1] = xa.y, xs[2] = xa.z, xs[3] = xa.w;
    xs[4] = xb.x, xs[5] = xb.y, xs[6] = xb.z, xs[7] = xb.w;
}

// -8 times the sum of the 32 activations in xs.
__device__ __forceinline__ int x_offset(const int (&xs)[8]) {
    int s = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) s = __dp4a(xs[i], 0x01010101, s);
    return -8 * s;
}

// block_isum_words<Q8_0>'s sum (the same int) from the activations' words xs.
__device__ __forceinline__ int q8_block_isum_regs(const uint32_t* p, int sh, const int (&xs)[8]) {
    uint32_t w[9];
    load_quant_words<8>(p, w);
    int s = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) s = __dp4a((int)__funnelshift_r(w[i], w[i + 1], sh), xs[i], s);
    return s;
}

// block_isum_words<Q4_0>'s sum (the same int) from the activations' words xs and their x_offset.
__device__ __forceinline__ int q4_block_isum_offset(const uint32_t* p, int sh, const int (&xs)[8], int x_off) {
    // Elements 0..15 are the low nibbles of the 16 bytes, elements 16..31 their high nibbles.
    uint32_t w[5];
    load_quant_words<4>(p, w);
    int s = x_off;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const unsigned q = __funnelshift_r(w[i], w[i + 1], sh);
        s = __dp4a((int)(q & 0x0f0f0f0fu), xs[i], s);
        s = __dp4a((int)((q >> 4) & 0x0f0f0f0fu), xs[4 + i], s);
    }
    return s;
}

// This lane's part of the dot product of the nb (<= TB) blocks in a shared-memory tile, blocks b0 .. b0 + nb - 1 of
// a row, with prepared activations (xqs: int8 quants, xd: their block scales).
template <DType T, int TB>
__device__ __forceinline__ float tile_dot_quant(const uint4* tile, int nb, int64_t b0, const int8_t* __restrict__ xqs,
                                                const float* __restrict__ xd, int lane) {
    constexpr int BB = QuantStages<T, TB>::kBlockBytes;
    const uint8_t* t8 = reinterpret_cast<const uint8_t*>(tile);
    const uint32_t* t32 = reinterpret_cast<const uint32_t*>(tile);
    float acc = 0.0f;
#pragma unroll
    for (int m = 0; m < TB / 32; m++) {
        const int j = lane + 32 * m;
        if (j < nb) {
            const float dw = fp16_bits_to_f32(*reinterpret_cast<const uint16_t*>(t8 + j * BB));
            const int off = j * BB + 2;
            const int isum = block_isum_words<T>(t32 + (off >> 2), (off & 3) * 8, xqs + (b0 + j) * QK8_0);
            acc += dw * xd[b0 + j] * (float)isum;
        }
    }
    return acc;
}

}  // namespace ember::gpu
