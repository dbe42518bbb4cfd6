// AVX-512 (F/BW/VL/DQ) + FMA + F16C versions of dot-avx2.cpp's kernels; same structure, same results for
// Q8_0/Q4_0 (bit for bit, both equal the scalar reference), masked loads for float tails. dot-avx512vnni.cpp compiles
// this file again with VNNI for the byte products (EMBER_AVX512_VNNI).
#if defined(EMBER_X86)
// GCC 12's AVX-512 headers trip -W(maybe-)uninitialized on their own _mm*_undefined_* (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/prefetch-isa.h"
#include "kernels-cpu/rows-isa.h"
#include "kernels-cpu/sums-isa.h"

namespace ember {

namespace {

constexpr int kRows = 4;              // rows per pass in dot_rows
// Software prefetch: while a group of rows streams, the same offset of the next group's rows is prefetched
// (rows are contiguous, so this covers the next group entirely and hides DRAM latency at row starts, which
// matters for short quantized rows). The last group of a call prefetches kPrefetchBytes ahead in its own rows.
constexpr int kPrefetchBytes = 1024;

// ---- float weights: 16 elements per vector ----
struct F32W {
    static constexpr int kBytes = 4;
    static __m512 load(const void* w, int64_t i) { return _mm512_loadu_ps((const float*)w + i); }
    static __m512 load(const void* w, int64_t i, __mmask16 k) { return _mm512_maskz_loadu_ps(k, (const float*)w + i); }
};
struct F16W {
    static constexpr int kBytes = 2;
    static __m512 load(const void* w, int64_t i) {
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)((const uint16_t*)w + i)));
    }
    static __m512 load(const void* w, int64_t i, __mmask16 k) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (const uint16_t*)w + i));
    }
};
struct BF16W {
    static constexpr int kBytes = 2;
    static __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
    static __m512 load(const void* w, int64_t i) {
        return widen(_mm256_loadu_si256((const __m256i*)((const uint16_t*)w + i)));
    }
    static __m512 load(const void* w, int64_t i, __mmask16 k) {
        return widen(_mm256_maskz_loadu_epi16(k, (const uint16_t*)w + i));
    }
};

// R rows, where `w` (rows-isa.h) places them: each step reads two 64-byte lines per row
// (32 F32 or 64 F16/BF16 elements).
template <typename L, int R, typename Rows>
void rows_float(const Rows& w, const float* x, float* y, int64_t n) {
    constexpr int kVecs = 128 / (16 * L::kBytes);  // vectors of 16 per step: 2 (F32) or 4 (F16/BF16)
    constexpr int kStep = 16 * kVecs;
    __m512 acc[R][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + kStep <= n; i += kStep) {
        __m512 xv[kVecs];
        for (int v = 0; v < kVecs; v++) xv[v] = _mm512_loadu_ps(x + i + 16 * v);
        for (int r = 0; r < R; r++) {
            const uint8_t* wr = w.row(r);
            prefetch(wr + i * L::kBytes + w.ahead(r));
            prefetch(wr + i * L::kBytes + w.ahead(r) + 64);
            for (int v = 0; v < kVecs; v++)
                acc[r][v & 1] = _mm512_fmadd_ps(L::load(wr, i + 16 * v), xv[v], acc[r][v & 1]);
        }
    }
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
        for (int r = 0; r < R; r++) acc[r][0] = _mm512_fmadd_ps(L::load(w.row(r), i, k), xv, acc[r][0]);
    }
    for (int r = 0; r < R; r++) y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
}

// ---- quantized weights against Q8_0 activations, two blocks per 512-bit vector ----
// 16 int32 partial sums of w[k] * x[k] (|w| times x with w's sign; |products| <= 2 * 128 * 127 fits int16).
// With VNNI (dot-avx512vnni.cpp) one vpdpbusd does maddubs + madd: the same int32 sums, as no int16 pair saturates.
inline __m512i dot_i8(__m512i w, __m512i x) {
    const __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
#if defined(EMBER_AVX512_VNNI)
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), sx);
#else
    const __m512i p16 = _mm512_maddubs_epi16(_mm512_abs_epi8(w), sx);
    return _mm512_madd_epi16(p16, _mm512_set1_epi16(1));
#endif
}

inline __m512i pair(__m256i a, __m256i b) { return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1); }

// maddubs with an unsigned first operand: 8 int32 partial sums of u[k] * x[k] (u <= 15, or 1), for a single block;
// dot_u8_2: u0 * x0 + u1 * x1 as 16 int32 sums, exact, since every int16 partial of maddubs stays within
// 2 * 2 * 15 * 128 for the nibbles and ones that are summed this way.
#if defined(EMBER_AVX512_VNNI)
inline __m256i dot_u8(__m256i u, __m256i x) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, x); }
inline __m512i dot_u8_2(__m512i u0, __m512i x0, __m512i u1, __m512i x1) {
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u0, x0), u1, x1);
}
#else
inline __m256i dot_u8(__m256i u, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
}
inline __m512i dot_u8_2(__m512i u0, __m512i x0, __m512i u1, __m512i x1) {
    const __m512i p16 = _mm512_add_epi16(_mm512_maddubs_epi16(u0, x0), _mm512_maddubs_epi16(u1, x1));
    return _mm512_madd_epi16(p16, _mm512_set1_epi16(1));
}
#endif

inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// m[j] holds blocks 2j (int32 0..7) and 2j+1 (int32 8..15): returns the 8 blocks' sums in block order.
inline __m256i reduce8(const __m512i m[4]) {
    const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(m[0], m[1]), _mm512_unpackhi_epi32(m[0], m[1]));
    const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(m[2], m[3]), _mm512_unpackhi_epi32(m[2], m[3]));
    // per 128-bit lane: [m0, m1, m2, m3] lane sums; lanes 0,1 hold blocks 0,2,4,6, lanes 2,3 blocks 1,3,5,7
    const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
    const __m256i lo = _mm512_castsi512_si256(u), hi = _mm512_extracti64x4_epi64(u, 1);
    const __m256i v = _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20), _mm256_permute2x128_si256(lo, hi, 0x31));
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// a's 128-bit lane j holds block j, b's block 4 + j (4 int32 each): returns the 8 blocks' sums in block order.
inline __m256i reduce4x2(__m512i a, __m512i b) {
    const __m512i t = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    const __m512i u = _mm512_add_epi32(t, _mm512_shuffle_epi32(t, _MM_PERM_BADC));  // per lane [A, B, A, B]
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, u));
}

// The 16-byte pieces at p[0], p[stride], p[2 * stride], p[3 * stride] as the four 128-bit lanes of one vector.
inline __m512i lanes4(const void* at, size_t stride) {
    const uint8_t* p = (const uint8_t*)at;
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i*)p));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i*)(p + stride)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i*)(p + 2 * stride)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i*)(p + 3 * stride)), 3);
}

// Each weight type's work on 8 blocks: X, the activations' 8 Q8_0 blocks laid out for it (once per 8 blocks, shared
// by all rows); W, the row's 8 blocks unpacked (once per row); isum8, the 8 blocks' exact integer dot products.
struct Q8W {
    using Block = block_q8_0;
    static __m256i load1(const Block& b) { return _mm256_loadu_si256((const __m256i*)b.qs); }
    static __m512i load2(const Block* b) { return pair(load1(b[0]), load1(b[1])); }
    struct X {
        __m512i v[4];  // blocks 2k and 2k + 1
    };
    using W = X;  // weights and activations are both Q8_0 blocks
    static X prep(const block_q8_0* x) {
        X r;
        for (int k = 0; k < 4; k++) r.v[k] = load2(x + 2 * k);
        return r;
    }
    static W unpack(const Block* b) { return prep(b); }
    static __m256i isum8(const W& w, const X& x) {
        __m512i m[4];
        for (int k = 0; k < 4; k++) m[k] = dot_i8(w.v[k], x.v[k]);
        return reduce8(m);
    }
    static int isum1(__m256i w, __m256i x) {
        const __m256i sx = _mm256_mask_sub_epi8(x, _mm256_movepi8_mask(w), _mm256_setzero_si256(), x);
        return hsum_i32(dot_u8(_mm256_abs_epi8(w), sx));
    }
};
// Q4_0 weights stay unsigned nibbles q in [0, 15]: sum (q - 8) x = sum q x - 8 sum x, both exact integers,
// with sum x computed once per activation block and shared by all rows. A block's 16 bytes hold elements 0-15 in
// their low nibbles and 16-31 in their high ones, so the activations are split the same way (X.lo: elements 0-15 of
// 4 blocks, one block per 128-bit lane; X.hi: elements 16-31) and the weight bytes need no reordering: 4 blocks'
// bytes in one vector, masked for the low nibbles and shifted for the high ones.
struct Q4W {
    using Block = block_q4_0;
    static __m256i load1(const Block& b) {  // 32 nibbles in element order: low nibbles, then high nibbles
        const __m128i q = _mm_loadu_si128((const __m128i*)b.qs);
        return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(15));
    }
    struct X {
        __m512i lo[2], hi[2];  // blocks 4k..4k+3
        __m256i corr;          // 8 * sum x, per block
    };
    struct W {
        __m512i lo[2], hi[2];
    };
    static X prep(const block_q8_0* x) {
        X r;
        for (int k = 0; k < 2; k++) {
            r.lo[k] = lanes4(x[4 * k].qs, sizeof(block_q8_0));
            r.hi[k] = lanes4(x[4 * k].qs + 16, sizeof(block_q8_0));
        }
        const __m512i ones = _mm512_set1_epi8(1);
        r.corr = _mm256_slli_epi32(reduce4x2(dot_u8_2(ones, r.lo[0], ones, r.hi[0]),
                                             dot_u8_2(ones, r.lo[1], ones, r.hi[1])),
                                   3);
        return r;
    }
    static W unpack(const Block* b) {
        W r;
        const __m512i m = _mm512_set1_epi8(15);
        for (int k = 0; k < 2; k++) {
            const __m512i q = lanes4(b[4 * k].qs, sizeof(Block));
            r.lo[k] = _mm512_and_si512(q, m);
            r.hi[k] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m);
        }
        return r;
    }
    static __m256i isum8(const W& w, const X& x) {
        return _mm256_sub_epi32(reduce4x2(dot_u8_2(w.lo[0], x.lo[0], w.hi[0], x.hi[0]),
                                          dot_u8_2(w.lo[1], x.lo[1], w.hi[1], x.hi[1])),
                                x.corr);
    }
    static int isum1(__m256i w, __m256i x) {
        return hsum_i32(dot_u8(w, x)) - 8 * hsum_i32(dot_u8(_mm256_set1_epi8(1), x));
    }
};

// The 8 fp16 scales of 8 consecutive weight blocks, via word permutes of the blocks' bytes (8 scalar inserts
// would cost more than the rest of the block's work).
inline __m256 wscales8(const block_q4_0* b) {  // scales at byte offsets 18k, all within the first 128 bytes
    const __m512i i16 = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         63, 54, 45, 36, 27, 18, 9, 0);
    const __m512i lo = _mm512_loadu_si512((const void*)b), hi = _mm512_loadu_si512((const uint8_t*)b + 64);
    return _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(lo, i16, hi)));
}
inline __m256 wscales8(const block_q8_0* b) {  // scales at byte offsets 34k: blocks 0-3 and 4-7 each in 128 bytes
    const __m512i i16 = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0, 0, 0, 0, 51, 34, 17, 0);
    const uint8_t* p = (const uint8_t*)b;
    const __m512i a = _mm512_permutex2var_epi16(_mm512_loadu_si512(p), i16, _mm512_loadu_si512(p + 64));
    const __m512i c = _mm512_permutex2var_epi16(_mm512_loadu_si512(p + 136), i16, _mm512_loadu_si512(p + 200));
    return _mm256_cvtph_ps(_mm_unpacklo_epi64(_mm512_castsi512_si128(a), _mm512_castsi512_si128(c)));
}

template <typename Block>
inline __m256 scales8(const Block* b) {
    return _mm256_cvtph_ps(_mm_set_epi16((short)b[7].d, (short)b[6].d, (short)b[5].d, (short)b[4].d, (short)b[3].d,
                                         (short)b[2].d, (short)b[1].d, (short)b[0].d));
}

template <typename Q, int R, typename Rows>
void rows_quant(const Rows& w, const block_q8_0* x, float* y, int64_t nb) {
    using Block = typename Q::Block;
    BlockSums<R> sums;
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        const __m256 dx = scales8(x + b);
        const typename Q::X xv = Q::prep(x + b);
        for (int r = 0; r < R; r++) {
            const Block* wb = (const Block*)w.row(r) + b;
            for (size_t off = 0; off < 8 * sizeof(Block); off += 64) prefetch((const uint8_t*)wb + off + w.ahead(r));
            const __m256i isum = Q::isum8(Q::unpack(wb), xv);
            __m256 prod = _mm256_mul_ps(_mm256_mul_ps(wscales8(wb), dx), _mm256_cvtepi32_ps(isum));
            EMBER_NO_CONTRACT(prod);
            sums.put(r, prod);
        }
        sums.step();
    }
    sums.flush();
    for (; b < nb; b++) {
        const __m256i xv = Q8W::load1(x[b]);
        const float dx = _cvtsh_ss(x[b].d);
        for (int r = 0; r < R; r++) {
            const Block& wb = ((const Block*)w.row(r))[b];
            float pr = _cvtsh_ss(wb.d) * dx * (float)Q::isum1(Q::load1(wb), xv);
            EMBER_NO_CONTRACT(pr);
            sums.sum[r] += pr;
        }
    }
    for (int r = 0; r < R; r++) y[r] = sums.sum[r];
}

// R rows, as `w` places them.
template <int R, typename Rows>
void rows_any(DType wt, const Rows& w, const void* xq, float* y, int64_t n) {
    switch (wt) {
        case DType::DTYPE_F32: rows_float<F32W, R>(w, (const float*)xq, y, n); return;
        case DType::DTYPE_F16: rows_float<F16W, R>(w, (const float*)xq, y, n); return;
        case DType::DTYPE_BF16: rows_float<BF16W, R>(w, (const float*)xq, y, n); return;
        case DType::DTYPE_Q8_0: rows_quant<Q8W, R>(w, (const block_q8_0*)xq, y, n / QK8_0); return;
        case DType::DTYPE_Q4_0: rows_quant<Q4W, R>(w, (const block_q8_0*)xq, y, n / QK4_0); return;
    }
    throw std::invalid_argument("dot_rows (avx512): weight type " + std::to_string((uint32_t)wt) +
                                " has no dot product, expected f32, f16, bf16, q8_0 or q4_0");
}

template <int R>
void rows_any(DType wt, const uint8_t* w, size_t stride, size_t pf, const void* xq, float* y, int64_t n) {
    rows_any<R>(wt, StridedRows{w, stride, pf}, xq, y, n);
}

void avx512_dot_rows(DType wt, const void* w, size_t stride, const void* xq, float* y, int64_t n_rows, int64_t n) {
    const uint8_t* wr = (const uint8_t*)w;
    int64_t r = 0;
    for (; r + kRows <= n_rows; r += kRows) {
        const size_t pf = r + 2 * kRows <= n_rows ? kRows * stride : kPrefetchBytes;
        rows_any<kRows>(wt, wr + r * stride, stride, pf, xq, y + r, n);
    }
    switch (n_rows - r) {
        case 3: rows_any<3>(wt, wr + r * stride, stride, kPrefetchBytes, xq, y + r, n); break;
        case 2: rows_any<2>(wt, wr + r * stride, stride, kPrefetchBytes, xq, y + r, n); break;
        case 1: rows_any<1>(wt, wr + r * stride, stride, kPrefetchBytes, xq, y + r, n); break;
        default: break;
    }
}

float avx512_dot_row(DType wt, const void* w, const void* xq, int64_t n) {
    float y;
    rows_any<1>(wt, (const uint8_t*)w, 0, kPrefetchBytes, xq, &y, n);
    return y;
}

float avx512_dot_row_prefetch(DType wt, const void* w, const void* next, const void* xq, int64_t n) {
    float y;
    // The kernels prefetch at w + offset + pf: pf is the distance to `next`, wrapping modulo 2^64 when next < w.
    const size_t pf = (size_t)((uintptr_t)next - (uintptr_t)w);
    rows_any<1>(wt, (const uint8_t*)w, 0, pf, xq, &y, n);
    return y;
}

void avx512_dot_rows_gather(DType wt, const void* const* rows, const void* const* nexts, const void* xq, float* ys,
                            int64_t n_rows, int64_t n) {
    gathered_passes(rows, nexts, n_rows, kGatherPassRows, [&](auto g, const GatheredRows& w, int64_t r) {
        rows_any<decltype(g)::value>(wt, w, xq, ys + r, n);
    });
}

// One float row against T vectors: rows_float<L, 1>'s arithmetic for each (the same accumulators, steps, tail and
// reduction: the same bits as dot_row), with the row's vectors loaded and converted once per step for all T; the
// step's two lines are prefetched pf bytes further on, as rows_float does.
template <typename L, int T>
void row_float_xs(const uint8_t* w, size_t pf, const void* const* xs, float* ys, int64_t n) {
    constexpr int kVecs = 128 / (16 * L::kBytes);
    constexpr int kStep = 16 * kVecs;
    const float* x[T];
    __m512 acc[T][2];
    for (int t = 0; t < T; t++) {
        x[t] = (const float*)xs[t];
        acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    }
    int64_t i = 0;
    for (; i + kStep <= n; i += kStep) {
        prefetch(w + i * L::kBytes + pf);
        prefetch(w + i * L::kBytes + pf + 64);
        __m512 wv[kVecs];
        for (int v = 0; v < kVecs; v++) wv[v] = L::load(w, i + 16 * v);
        for (int t = 0; t < T; t++)
            for (int v = 0; v < kVecs; v++)
                acc[t][v & 1] = _mm512_fmadd_ps(wv[v], _mm512_loadu_ps(x[t] + i + 16 * v), acc[t][v & 1]);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 wv = L::load(w, i, k);
        for (int t = 0; t < T; t++) acc[t][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k, x[t] + i), acc[t][0]);
    }
    for (int t = 0; t < T; t++) ys[t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]));
}

// One quantized row against T Q8_0 vectors: rows_quant<Q, 1>'s arithmetic for each (the same integer sums, products
// and scalar additions in block order: the same bits as dot_row), with the row's blocks unpacked and its scales
// converted once per 8 blocks for all T. The T sums are independent chains, where dot_row waits on one.
template <typename Q, int T>
void row_quant_xs(const uint8_t* w, size_t pf, const void* const* xs, float* ys, int64_t nb) {
    using Block = typename Q::Block;
    const block_q8_0* x[T];
    for (int t = 0; t < T; t++) x[t] = (const block_q8_0*)xs[t];
    BlockSums<T> sums;
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        const Block* wb = (const Block*)w + b;
        for (size_t off = 0; off < 8 * sizeof(Block); off += 64) prefetch((const uint8_t*)wb + off + pf);
        const typename Q::W wv = Q::unpack(wb);
        const __m256 dw = wscales8(wb);
        for (int t = 0; t < T; t++) {
            const block_q8_0* xt = x[t] + b;
            const __m256 dx = scales8(xt);
            const __m256i isum = Q::isum8(wv, Q::prep(xt));
            __m256 prod = _mm256_mul_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(isum));
            EMBER_NO_CONTRACT(prod);
            sums.put(t, prod);
        }
        sums.step();
    }
    sums.flush();
    for (; b < nb; b++) {
        const Block& wb = ((const Block*)w)[b];
        for (int t = 0; t < T; t++) {
            const __m256i xv = Q8W::load1(x[t][b]);
            const float dx = _cvtsh_ss(x[t][b].d);
            float pr = _cvtsh_ss(wb.d) * dx * (float)Q::isum1(Q::load1(wb), xv);
            EMBER_NO_CONTRACT(pr);
            sums.sum[t] += pr;
        }
    }
    for (int t = 0; t < T; t++) ys[t] = sums.sum[t];
}

// Kernel::run<T> for one row against T vectors, by type: floats (n elements) and quantized rows (n / 32 blocks).
template <typename L>
struct FloatRowXs {
    template <int T>
    static void run(const uint8_t* w, size_t pf, const void* const* xs, float* ys, int64_t n) {
        row_float_xs<L, T>(w, pf, xs, ys, n);
    }
};
template <typename Q>
struct QuantRowXs {
    template <int T>
    static void run(const uint8_t* w, size_t pf, const void* const* xs, float* ys, int64_t n) {
        row_quant_xs<Q, T>(w, pf, xs, ys, n / QK8_0);
    }
};

// Groups of up to 8 vectors; the first group prefetches `next`, later ones their own row (by then in cache).
template <typename Kernel>
void row_xs_groups(const uint8_t* w, size_t pf, const void* const* xs, int n_x, float* ys, int64_t n) {
    for (int b = 0; b < n_x; b += 8) {
        const size_t p = b == 0 ? pf : kPrefetchBytes;
        switch (std::min(8, n_x - b)) {
            case 8: Kernel::template run<8>(w, p, xs + b, ys + b, n); break;
            case 7: Kernel::template run<7>(w, p, xs + b, ys + b, n); break;
            case 6: Kernel::template run<6>(w, p, xs + b, ys + b, n); break;
            case 5: Kernel::template run<5>(w, p, xs + b, ys + b, n); break;
            case 4: Kernel::template run<4>(w, p, xs + b, ys + b, n); break;
            case 3: Kernel::template run<3>(w, p, xs + b, ys + b, n); break;
            case 2: Kernel::template run<2>(w, p, xs + b, ys + b, n); break;
            default: Kernel::template run<1>(w, p, xs + b, ys + b, n); break;
        }
    }
}

void avx512_dot_row_xs(DType wt, const void* w, const void* next, const void* const* xs, int n_x, float* ys,
                       int64_t n) {
    if (n_x <= 0) return;
    const uint8_t* wr = (const uint8_t*)w;
    const size_t pf = (size_t)((uintptr_t)next - (uintptr_t)w);  // as in dot_row_prefetch
    switch (wt) {
        case DType::DTYPE_F32: row_xs_groups<FloatRowXs<F32W>>(wr, pf, xs, n_x, ys, n); return;
        case DType::DTYPE_F16: row_xs_groups<FloatRowXs<F16W>>(wr, pf, xs, n_x, ys, n); return;
        case DType::DTYPE_BF16: row_xs_groups<FloatRowXs<BF16W>>(wr, pf, xs, n_x, ys, n); return;
        case DType::DTYPE_Q8_0: row_xs_groups<QuantRowXs<Q8W>>(wr, pf, xs, n_x, ys, n); return;
        case DType::DTYPE_Q4_0: row_xs_groups<QuantRowXs<Q4W>>(wr, pf, xs, n_x, ys, n); return;
    }
    throw std::invalid_argument("dot_row_xs (avx512): weight type " + std::to_string((uint32_t)wt) +
                                " has no dot product, expected f32, f16, bf16, q8_0 or q4_0");
}

void avx512_dequantize_row(DType t, const void* x, float* y, int64_t n) {
    switch (t) {
        case DType::DTYPE_F32: std::memcpy(y, x, (size_t)n * 4); return;
        case DType::DTYPE_F16:
        case DType::DTYPE_BF16: {
            const bool h = t == DType::DTYPE_F16;
            for (int64_t i = 0; i < n; i += 16) {
                const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
                _mm512_mask_storeu_ps(y + i, k, h ? F16W::load(x, i, k) : BF16W::load(x, i, k));
            }
            return;
        }
        case DType::DTYPE_Q8_0: {
            const block_q8_0* b = (const block_q8_0*)x;
            for (int64_t i = 0; i < n / QK8_0; i++) {
                const __m512 d = _mm512_set1_ps(_cvtsh_ss(b[i].d));
                for (int k = 0; k < 2; k++) {
                    const __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(b[i].qs + 16 * k)));
                    _mm512_storeu_ps(y + i * QK8_0 + 16 * k, _mm512_mul_ps(_mm512_cvtepi32_ps(q), d));
                }
            }
            return;
        }
        case DType::DTYPE_Q4_0: {
            const block_q4_0* b = (const block_q4_0*)x;
            for (int64_t i = 0; i < n / QK4_0; i++) {
                const __m512 d = _mm512_set1_ps(_cvtsh_ss(b[i].d));
                const __m256i v = _mm256_sub_epi8(Q4W::load1(b[i]), _mm256_set1_epi8(8));
                const __m128i half[2] = {_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)};
                for (int k = 0; k < 2; k++) {
                    const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(half[k]));
                    _mm512_storeu_ps(y + i * QK4_0 + 16 * k, _mm512_mul_ps(f, d));
                }
            }
            return;
        }
    }
    throw std::invalid_argument("dequantize_row (avx512): unknown type " + std::to_string((uint32_t)t));
}

// roundf: round half away from zero. trunc, then add +-1 where the (exact) fraction is >= 0.5.
inline __m512 round_half_away(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
    return _mm512_mask_add_ps(t, up, t, one);
}

void avx512_quantize_q8_0(const float* x, void* yv, int64_t n) {
    block_q8_0* y = (block_q8_0*)yv;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const __m512 v0 = _mm512_loadu_ps(x + i * QK8_0), v1 = _mm512_loadu_ps(x + i * QK8_0 + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = (uint16_t)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i q0 = _mm512_cvttps_epi32(round_half_away(_mm512_mul_ps(v0, vid)));
        const __m512i q1 = _mm512_cvttps_epi32(round_half_away(_mm512_mul_ps(v1, vid)));
        _mm_storeu_si128((__m128i*)y[i].qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i*)(y[i].qs + 16), _mm512_cvtepi32_epi8(q1));
    }
}

// ---- axpy: y += a * w, several rows per pass over y ----
// Rows are added in groups of kAxpyRows: y is loaded and stored once per group (not once per row), and per element
// the group's rows are FMAs in row order, so the bits do not depend on the grouping. While a group streams, the
// rows about kAxpyLead bytes further on are prefetched at the offsets being read: the rows are scattered, and the
// hardware prefetcher cannot guess where the next one starts. 8 rows and 8 KiB measured best on a 2-core Zen 5
// (4 rows: up to 25% slower at 2 threads for Q4_0 at 10% active; 16 or 32 KiB: no better).
constexpr int kAxpyRows = 8;
constexpr int64_t kAxpyLead = 8192;     // bytes of rows; rounded to whole groups, at least one
constexpr int kAxpyMaxGroupsAhead = 4;  // and at most 4 (with 16 threads a group's segments are short)

// R rows into y[0, n): per element acc = fma(w_r, a_r, acc) for r in order. pf: R rows prefetched at the offsets
// being read, one 64-byte line per row and step.
template <typename L, int R>
void axpy_float(const uint8_t* const* rows, const float* a, const uint8_t* const* pf, float* y, int64_t n) {
    constexpr int kStep = 64 / L::kBytes;  // elements per line: 16 (F32) or 32 (F16/BF16)
    __m512 av[R];
    for (int r = 0; r < R; r++) av[r] = _mm512_set1_ps(a[r]);
    int64_t i = 0;
    for (; i + kStep <= n; i += kStep) {
        for (int r = 0; r < R; r++) prefetch(pf[r] + i * L::kBytes);
        for (int v = 0; v < kStep / 16; v++) {
            __m512 acc = _mm512_loadu_ps(y + i + 16 * v);
            for (int r = 0; r < R; r++) acc = _mm512_fmadd_ps(L::load(rows[r], i + 16 * v), av[r], acc);
            _mm512_storeu_ps(y + i + 16 * v, acc);
        }
    }
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 acc = _mm512_maskz_loadu_ps(k, y + i);
        for (int r = 0; r < R; r++) acc = _mm512_fmadd_ps(L::load(rows[r], i, k), av[r], acc);
        _mm512_mask_storeu_ps(y + i, k, acc);
    }
}

// One block of 32 weights as 2 vectors of 16 floats, exactly (q or q - 8 as float).
struct Q8A {
    using Block = block_q8_0;
    static void load(const Block& b, __m512 w[2]) {
        for (int k = 0; k < 2; k++)
            w[k] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(b.qs + 16 * k))));
    }
};
struct Q4A {
    using Block = block_q4_0;
    static void load(const Block& b, __m512 w[2]) {
        // A 16-entry table q -> q - 8; the permute reads the index's low 4 bits, so the low nibble needs no mask.
        const __m512 table = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
        const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)b.qs));
        w[0] = _mm512_permutexvar_ps(q, table);
        w[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
    }
};

// Quantized rows: per block, acc = fma(q, a_r * d_r, acc). Eight blocks at a time: the rows' 8 scales are converted
// and multiplied by a_r in one vector (per block and row, a scalar conversion would cost as much as the block's
// arithmetic), and their bytes (144 or 272) are prefetched in the pf rows.
template <typename Q, int R>
void axpy_quant(const uint8_t* const* rows, const float* a, const uint8_t* const* pf, float* y, int64_t n) {
    using Block = typename Q::Block;
    constexpr size_t kSpan = 8 * sizeof(Block);
    const int64_t nb = n / QK8_0;
    alignas(32) float ad[R][8];  // a_r * d_r for the 8 blocks
    auto block = [&](int64_t b, int s) {
        __m512 acc[2];
        for (int k = 0; k < 2; k++) acc[k] = _mm512_loadu_ps(y + b * QK8_0 + 16 * k);
        for (int r = 0; r < R; r++) {
            const __m512 d = _mm512_set1_ps(ad[r][s]);
            __m512 w[2];
            Q::load(((const Block*)rows[r])[b], w);
            for (int k = 0; k < 2; k++) acc[k] = _mm512_fmadd_ps(w[k], d, acc[k]);
        }
        for (int k = 0; k < 2; k++) _mm512_storeu_ps(y + b * QK8_0 + 16 * k, acc[k]);
    };
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        for (int r = 0; r < R; r++) {
            const uint8_t* p = pf[r] + b * sizeof(Block);
            for (size_t off = 0; off < kSpan; off += 64) prefetch(p + off);
            prefetch(p + kSpan - 1);
            _mm256_store_ps(ad[r], _mm256_mul_ps(wscales8((const Block*)rows[r] + b), _mm256_set1_ps(a[r])));
        }
        for (int s = 0; s < 8; s++) block(b + s, s);
    }
    for (; b < nb; b++) {
        for (int r = 0; r < R; r++) ad[r][0] = a[r] * _cvtsh_ss(((const Block*)rows[r])[b].d);
        block(b, 0);
    }
}

template <int R>
void axpy_any(DType t, const uint8_t* const* rows, const float* a, const uint8_t* const* pf, float* y, int64_t n) {
    switch (t) {
        case DType::DTYPE_F32: axpy_float<F32W, R>(rows, a, pf, y, n); return;
        case DType::DTYPE_F16: axpy_float<F16W, R>(rows, a, pf, y, n); return;
        case DType::DTYPE_BF16: axpy_float<BF16W, R>(rows, a, pf, y, n); return;
        case DType::DTYPE_Q8_0: axpy_quant<Q8A, R>(rows, a, pf, y, n); return;
        case DType::DTYPE_Q4_0: axpy_quant<Q4A, R>(rows, a, pf, y, n); return;
    }
    throw std::invalid_argument("axpy_rows (avx512): weight type " + std::to_string((uint32_t)t) +
                                " has no axpy, expected f32, f16, bf16, q8_0 or q4_0");
}

void avx512_axpy_rows(DType t, const void* const* rows_v, const float* a, int64_t n_rows, float* y, int64_t n) {
    const uint8_t* const* rows = (const uint8_t* const*)rows_v;
    // Prefetch distance in rows: whole groups, about kAxpyLead bytes of them.
    const int64_t group_bytes = std::max<int64_t>(1, kAxpyRows * (int64_t)dtype_row_bytes(t, n));
    const int64_t ahead = kAxpyRows * std::clamp<int64_t>(kAxpyLead / group_bytes, 1, kAxpyMaxGroupsAhead);
    for (int64_t r = 0; r < n_rows; r += kAxpyRows) {
        const int g = (int)std::min<int64_t>(kAxpyRows, n_rows - r);
        // Prefetch targets: the rows `ahead` further on (the last row repeated past the end); when none is left,
        // the group's own rows kPrefetchBytes ahead.
        const uint8_t* pf[kAxpyRows];
        for (int q = 0; q < kAxpyRows; q++) {
            pf[q] = r + ahead < n_rows ? rows[std::min<int64_t>(r + ahead + q, n_rows - 1)]
                                       : rows[r + std::min(q, g - 1)] + kPrefetchBytes;
        }
        switch (g) {
            case 8: axpy_any<8>(t, rows + r, a + r, pf, y, n); break;
            case 7: axpy_any<7>(t, rows + r, a + r, pf, y, n); break;
            case 6: axpy_any<6>(t, rows + r, a + r, pf, y, n); break;
            case 5: axpy_any<5>(t, rows + r, a + r, pf, y, n); break;
            case 4: axpy_any<4>(t, rows + r, a + r, pf, y, n); break;
            case 3: axpy_any<3>(t, rows + r, a + r, pf, y, n); break;
            case 2: axpy_any<2>(t, rows + r, a + r, pf, y, n); break;
            default: axpy_any<1>(t, rows + r, a + r, pf, y, n); break;
        }
    }
}

void avx512_axpy_row(DType t, const void* w, float a, float* y, int64_t n) { avx512_axpy_rows(t, &w, &a, 1, y, n); }

#if defined(EMBER_AVX512_VNNI)
const DotKernels kAvx512 = {"avx512vnni",          avx512_dot_row,          avx512_dot_rows,
                            avx512_dequantize_row, avx512_quantize_q8_0,    avx512_dot_row_prefetch,
                            avx512_axpy_row,       avx512_axpy_rows,        avx512_dot_row_xs,
                            avx512_dot_rows_gather};
#else
const DotKernels kAvx512 = {"avx512",              avx512_dot_row,          avx512_dot_rows,
                            avx512_dequantize_row, avx512_quantize_q8_0,    avx512_dot_row_prefetch,
                            avx512_axpy_row,       avx512_axpy_rows,        avx512_dot_row_xs,
                            avx512_dot_rows_gather};
#endif

}  // namespace

#if defined(EMBER_AVX512_VNNI) && defined(EMBER_PREFETCH_L2)
const DotKernels* dot_kernels_avx512vnni_l2() { return &kAvx512; }
#elif defined(EMBER_AVX512_VNNI)
const DotKernels* dot_kernels_avx512vnni() { return &kAvx512; }
#elif defined(EMBER_PREFETCH_L2)
const DotKernels* dot_kernels_avx512_l2() { return &kAvx512; }
#else
const DotKernels* dot_kernels_avx512() { return &kAvx512; }
#endif

}  // namespace ember
#endif  // EMBER_X86
