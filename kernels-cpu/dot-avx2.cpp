// AVX2 + FMA + F16C dot products, dequantizers and the Q8_0 activation quantizer (compiled with -mavx2 -mfma -mf16c).
// Float types: several rows per pass share the activation loads, FMA into per-row accumulators.
// Q8_0/Q4_0: integer sums per block (maddubs + madd; Q8_0 via the sign trick, Q4_0 as unsigned nibbles minus
// 8 * sum x), 8 blocks reduced into one vector, then (d_w * d_x) * isum rounded per block and added in block
// order: the scalar reference's exact float operations. Activations must come from the Q8_0 quantizer
// (|q| <= 127: the sign trick cannot negate -128).
#if defined(EMBER_X86)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
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

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

inline uint16_t load_u16(const void* w, int64_t i) {
    uint16_t v;
    std::memcpy(&v, (const uint8_t*)w + 2 * i, 2);
    return v;
}

// ---- float weights: 8 elements per vector ----
struct F32W {
    static constexpr int kBytes = 4;
    static __m256 load(const void* w, int64_t i) { return _mm256_loadu_ps((const float*)w + i); }
    static float scalar(const void* w, int64_t i) {
        float v;
        std::memcpy(&v, (const uint8_t*)w + 4 * i, 4);  // rows need no alignment
        return v;
    }
};
struct F16W {
    static constexpr int kBytes = 2;
    static __m256 load(const void* w, int64_t i) {
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const uint16_t*)w + i)));
    }
    static float scalar(const void* w, int64_t i) { return _cvtsh_ss(load_u16(w, i)); }
};
struct BF16W {
    static constexpr int kBytes = 2;
    static __m256 load(const void* w, int64_t i) {
        const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)((const uint16_t*)w + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
    }
    static float scalar(const void* w, int64_t i) { return bf16_to_f32(load_u16(w, i)); }
};

// R rows, where `w` (rows-isa.h) places them: each step reads one 64-byte line per row
// (16 F32 or 32 F16/BF16 elements).
template <typename L, int R, typename Rows>
void rows_float(const Rows& w, const float* x, float* y, int64_t n) {
    constexpr int kVecs = 64 / (8 * L::kBytes);  // vectors of 8 per step: 2 (F32) or 4 (F16/BF16)
    constexpr int kStep = 8 * kVecs;
    __m256 acc[R][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + kStep <= n; i += kStep) {
        __m256 xv[kVecs];
        for (int v = 0; v < kVecs; v++) xv[v] = _mm256_loadu_ps(x + i + 8 * v);
        for (int r = 0; r < R; r++) {
            const uint8_t* wr = w.row(r);
            prefetch(wr + i * L::kBytes + w.ahead(r));
            for (int v = 0; v < kVecs; v++) acc[r][v & 1] = _mm256_fmadd_ps(L::load(wr, i + 8 * v), xv[v], acc[r][v & 1]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        for (int r = 0; r < R; r++) acc[r][0] = _mm256_fmadd_ps(L::load(w.row(r), i), xv, acc[r][0]);
    }
    for (int r = 0; r < R; r++) {
        float s = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
        for (int64_t j = i; j < n; j++) s += L::scalar(w.row(r), j) * x[j];
        y[r] = s;
    }
}

// ---- quantized weights against Q8_0 activations ----
// 8 int32 partial sums of w[k] * x[k] over 32 int8 pairs (|w| * sign(x, w) keeps maddubs' first operand
// unsigned; |products| <= 2 * 128 * 127 fits int16).
inline __m256i dot_i8(__m256i w, __m256i x) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// maddubs with an unsigned first operand: 8 int32 partial sums of u[k] * x[k] (u <= 15 for Q4_0 nibbles, or 1).
inline __m256i dot_u8(__m256i u, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
}

// u0 * x0 + u1 * x1 bytewise (unsigned by signed), as 8 int32 sums: exact, since every int16 partial stays within
// 2 * 2 * 15 * 128 for the nibbles and ones summed this way.
inline __m256i dot_u8_2(__m256i u0, __m256i x0, __m256i u1, __m256i x1) {
    const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(u0, x0), _mm256_maddubs_epi16(u1, x1));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// One vector holding the 8 blocks' integer sums, in block order.
inline __m256i reduce8(const __m256i m[8]) {
    const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
    const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(m[4], m[5]), _mm256_hadd_epi32(m[6], m[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
}
// m[k]'s low 128-bit lane holds block 2k, its high lane block 2k + 1 (4 int32 each): the 8 blocks' sums in order.
inline __m256i reduce4x2(const __m256i m[4]) {
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
    return _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));  // lanes: 0 2 4 6 | 1 3 5 7
}

// Each weight type's work on 8 blocks: X, the activations' 8 Q8_0 blocks laid out for it (once per 8 blocks, shared
// by all rows); W, the row's 8 blocks unpacked (once per row); isum8, the 8 blocks' exact integer dot products.
// load and dot: one block in element order, for the last blocks of a row.
struct Q8W {
    using Block = block_q8_0;
    static constexpr bool kNibbles = false;
    static __m256i load(const Block& b) { return _mm256_loadu_si256((const __m256i*)b.qs); }
    static __m256i dot(__m256i w, __m256i x) { return dot_i8(w, x); }
    struct X {
        __m256i v[8];
    };
    using W = X;  // weights and activations are both Q8_0 blocks
    static X prep(const block_q8_0* x) {
        X r;
        for (int k = 0; k < 8; k++) r.v[k] = load(x[k]);
        return r;
    }
    static W unpack(const Block* b) { return prep(b); }
    static __m256i isum8(const W& w, const X& x) {
        __m256i m[8];
        for (int k = 0; k < 8; k++) m[k] = dot_i8(w.v[k], x.v[k]);
        return reduce8(m);
    }
};
// Q4_0 weights stay unsigned nibbles q in [0, 15]: sum (q - 8) x = sum q x - 8 sum x, both exact integers,
// with sum x computed once per activation block and shared by all rows. A block's 16 bytes hold elements 0-15 in
// their low nibbles and 16-31 in their high ones, so the activations are split the same way (X.lo[k]: elements 0-15
// of blocks 2k and 2k + 1, one per 128-bit lane; X.hi[k]: elements 16-31) and two blocks' weight bytes are one
// vector, masked for the low nibbles and shifted for the high ones.
struct Q4W {
    using Block = block_q4_0;
    static constexpr bool kNibbles = true;
    static __m256i load(const Block& b) {  // 32 nibbles in element order: low nibbles, then high nibbles
        const __m128i q = _mm_loadu_si128((const __m128i*)b.qs);
        return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(15));
    }
    static __m256i dot(__m256i w, __m256i x) { return dot_u8(w, x); }
    static __m256i lanes2(const void* a, const void* b) {
        return _mm256_loadu2_m128i((const __m128i*)b, (const __m128i*)a);
    }
    struct X {
        __m256i lo[4], hi[4];
        __m256i corr;  // 8 * sum x, per block
    };
    struct W {
        __m256i lo[4], hi[4];
    };
    static X prep(const block_q8_0* x) {
        X r;
        const __m256i ones = _mm256_set1_epi8(1);
        __m256i s[4];
        for (int k = 0; k < 4; k++) {
            r.lo[k] = lanes2(x[2 * k].qs, x[2 * k + 1].qs);
            r.hi[k] = lanes2(x[2 * k].qs + 16, x[2 * k + 1].qs + 16);
            s[k] = dot_u8_2(ones, r.lo[k], ones, r.hi[k]);
        }
        r.corr = _mm256_slli_epi32(reduce4x2(s), 3);
        return r;
    }
    static W unpack(const Block* b) {
        W r;
        const __m256i m = _mm256_set1_epi8(15);
        for (int k = 0; k < 4; k++) {
            const __m256i q = lanes2(b[2 * k].qs, b[2 * k + 1].qs);
            r.lo[k] = _mm256_and_si256(q, m);
            r.hi[k] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m);
        }
        return r;
    }
    static __m256i isum8(const W& w, const X& x) {
        __m256i m[4];
        for (int k = 0; k < 4; k++) m[k] = dot_u8_2(w.lo[k], x.lo[k], w.hi[k], x.hi[k]);
        return _mm256_sub_epi32(reduce4x2(m), x.corr);
    }
};

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
    const __m256i ones = _mm256_set1_epi8(1);
    for (; b + 8 <= nb; b += 8) {
        const __m256 dx = scales8(x + b);
        const typename Q::X xv = Q::prep(x + b);
        for (int r = 0; r < R; r++) {
            const Block* wb = (const Block*)w.row(r) + b;
            for (size_t off = 0; off < 8 * sizeof(Block); off += 64) prefetch((const uint8_t*)wb + off + w.ahead(r));
            const __m256i isum = Q::isum8(Q::unpack(wb), xv);
            __m256 prod = _mm256_mul_ps(_mm256_mul_ps(scales8(wb), dx), _mm256_cvtepi32_ps(isum));
            EMBER_NO_CONTRACT(prod);
            sums.put(r, prod);
        }
        sums.step();
    }
    sums.flush();
    for (; b < nb; b++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i*)x[b].qs);
        const float dx = _cvtsh_ss(x[b].d);
        const int corr = Q::kNibbles ? 8 * hsum_i32(dot_u8(ones, xv)) : 0;
        for (int r = 0; r < R; r++) {
            const Block& wb = ((const Block*)w.row(r))[b];
            float pr = _cvtsh_ss(wb.d) * dx * (float)(hsum_i32(Q::dot(Q::load(wb), xv)) - corr);
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
    throw std::invalid_argument("dot_rows (avx2): weight type " + std::to_string((uint32_t)wt) +
                                " has no dot product, expected f32, f16, bf16, q8_0 or q4_0");
}

template <int R>
void rows_any(DType wt, const uint8_t* w, size_t stride, size_t pf, const void* xq, float* y, int64_t n) {
    rows_any<R>(wt, StridedRows{w, stride, pf}, xq, y, n);
}

void avx2_dot_rows(DType wt, const void* w, size_t stride, const void* xq, float* y, int64_t n_rows, int64_t n) {
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

float avx2_dot_row(DType wt, const void* w, const void* xq, int64_t n) {
    float y;
    rows_any<1>(wt, (const uint8_t*)w, 0, kPrefetchBytes, xq, &y, n);
    return y;
}

float avx2_dot_row_prefetch(DType wt, const void* w, const void* next, const void* xq, int64_t n) {
    float y;
    // The kernels prefetch at w + offset + pf: pf is the distance to `next`, wrapping modulo 2^64 when next < w.
    const size_t pf = (size_t)((uintptr_t)next - (uintptr_t)w);
    rows_any<1>(wt, (const uint8_t*)w, 0, pf, xq, &y, n);
    return y;
}

void avx2_dot_rows_gather(DType wt, const void* const* rows, const void* const* nexts, const void* xq, float* ys,
                          int64_t n_rows, int64_t n) {
    // Q8_0 rows one at a time: with 16 ymm registers four rows' blocks and their activations do not fit, and on a
    // 16-core Xeon four at a time read them no faster than one by one (0-15 % slower in two runs).
    const int per_pass = wt == DType::DTYPE_Q8_0 ? 1 : kGatherPassRows;
    gathered_passes(rows, nexts, n_rows, per_pass, [&](auto g, const GatheredRows& w, int64_t r) {
        rows_any<decltype(g)::value>(wt, w, xq, ys + r, n);
    });
}

void avx2_dequantize_row(DType t, const void* x, float* y, int64_t n) {
    switch (t) {
        case DType::DTYPE_F32: std::memcpy(y, x, (size_t)n * 4); return;
        case DType::DTYPE_F16:
        case DType::DTYPE_BF16: {
            const bool h = t == DType::DTYPE_F16;
            int64_t i = 0;
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, h ? F16W::load(x, i) : BF16W::load(x, i));
            for (; i < n; i++) y[i] = h ? F16W::scalar(x, i) : BF16W::scalar(x, i);
            return;
        }
        case DType::DTYPE_Q8_0: {
            const block_q8_0* b = (const block_q8_0*)x;
            for (int64_t i = 0; i < n / QK8_0; i++) {
                const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));
                for (int k = 0; k < 4; k++) {
                    const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(b[i].qs + 8 * k)));
                    _mm256_storeu_ps(y + i * QK8_0 + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
                }
            }
            return;
        }
        case DType::DTYPE_Q4_0: {
            const block_q4_0* b = (const block_q4_0*)x;
            for (int64_t i = 0; i < n / QK4_0; i++) {
                const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));
                const __m256i v = _mm256_sub_epi8(Q4W::load(b[i]), _mm256_set1_epi8(8));
                const __m128i half[2] = {_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)};
                for (int k = 0; k < 4; k++) {
                    const __m128i q8 = k & 1 ? _mm_srli_si128(half[k >> 1], 8) : half[k >> 1];
                    const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
                    _mm256_storeu_ps(y + i * QK4_0 + 8 * k, _mm256_mul_ps(f, d));
                }
            }
            return;
        }
    }
    throw std::invalid_argument("dequantize_row (avx2): unknown type " + std::to_string((uint32_t)t));
}

// roundf: round half away from zero. trunc, then add +-1 where the (exact) fraction is >= 0.5.
inline __m256 round_half_away(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, sign));
    return _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one));
}

void avx2_quantize_q8_0(const float* x, void* yv, int64_t n) {
    block_q8_0* y = (block_q8_0*)yv;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        __m256 v[4];
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + i * QK8_0 + 8 * k);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float d = _mm_cvtss_f32(m4) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = (uint16_t)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) q[k] = _mm256_cvttps_epi32(round_half_away(_mm256_mul_ps(v[k], vid)));
        // packs work per 128-bit lane: the permute puts the 8 groups of 4 bytes back in element order
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i*)y[i].qs, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
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
    __m256 av[R];
    for (int r = 0; r < R; r++) av[r] = _mm256_set1_ps(a[r]);
    int64_t i = 0;
    for (; i + kStep <= n; i += kStep) {
        for (int r = 0; r < R; r++) prefetch(pf[r] + i * L::kBytes);
        for (int v = 0; v < kStep / 8; v++) {
            __m256 acc = _mm256_loadu_ps(y + i + 8 * v);
            for (int r = 0; r < R; r++) acc = _mm256_fmadd_ps(L::load(rows[r], i + 8 * v), av[r], acc);
            _mm256_storeu_ps(y + i + 8 * v, acc);
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 acc = _mm256_loadu_ps(y + i);
        for (int r = 0; r < R; r++) acc = _mm256_fmadd_ps(L::load(rows[r], i), av[r], acc);
        _mm256_storeu_ps(y + i, acc);
    }
    for (; i < n; i++) {
        float acc = y[i];
        for (int r = 0; r < R; r++) acc = std::fma(L::scalar(rows[r], i), a[r], acc);  // same rounding as the lanes
        y[i] = acc;
    }
}

// One block of 32 weights as 4 vectors of 8 floats, exactly (q or q - 8 as float).
struct Q8A {
    using Block = block_q8_0;
    static void load(const Block& b, __m256 w[4]) {
        for (int k = 0; k < 4; k++)
            w[k] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(b.qs + 8 * k))));
    }
};
struct Q4A {
    using Block = block_q4_0;
    static void load(const Block& b, __m256 w[4]) {
        const __m256i m = _mm256_set1_epi32(15), eight = _mm256_set1_epi32(8);
        for (int h = 0; h < 2; h++) {  // bytes 8h..8h+7: elements 8h.. (low nibbles) and 16 + 8h.. (high nibbles)
            const __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(b.qs + 8 * h)));
            w[h] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(q, m), eight));
            w[2 + h] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(q, 4), eight));
        }
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
        __m256 acc[4];
        for (int k = 0; k < 4; k++) acc[k] = _mm256_loadu_ps(y + b * QK8_0 + 8 * k);
        for (int r = 0; r < R; r++) {
            const __m256 d = _mm256_set1_ps(ad[r][s]);
            __m256 w[4];
            Q::load(((const Block*)rows[r])[b], w);
            for (int k = 0; k < 4; k++) acc[k] = _mm256_fmadd_ps(w[k], d, acc[k]);
        }
        for (int k = 0; k < 4; k++) _mm256_storeu_ps(y + b * QK8_0 + 8 * k, acc[k]);
    };
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        for (int r = 0; r < R; r++) {
            const uint8_t* p = pf[r] + b * sizeof(Block);
            for (size_t off = 0; off < kSpan; off += 64) prefetch(p + off);
            prefetch(p + kSpan - 1);
            _mm256_store_ps(ad[r], _mm256_mul_ps(scales8((const Block*)rows[r] + b), _mm256_set1_ps(a[r])));
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
    throw std::invalid_argument("axpy_rows (avx2): weight type " + std::to_string((uint32_t)t) +
                                " has no axpy, expected f32, f16, bf16, q8_0 or q4_0");
}

void avx2_axpy_rows(DType t, const void* const* rows_v, const float* a, int64_t n_rows, float* y, int64_t n) {
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

void avx2_axpy_row(DType t, const void* w, float a, float* y, int64_t n) { avx2_axpy_rows(t, &w, &a, 1, y, n); }

const DotKernels kAvx2 = {"avx2", avx2_dot_row, avx2_dot_rows, avx2_dequantize_row, avx2_quantize_q8_0,
                          avx2_dot_row_prefetch, avx2_axpy_row, avx2_axpy_rows, nullptr,
                          avx2_dot_rows_gather};

}  // namespace

#if defined(EMBER_PREFETCH_L2)
const DotKernels* dot_kernels_avx2_l2() { return &kAvx2; }
#else
const DotKernels* dot_kernels_avx2() { return &kAvx2; }
#endif

}  // namespace ember
#endif  // EMBER_X86
