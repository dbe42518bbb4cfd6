// The SIMD tables' in-order float sums (dot-avx2.cpp, dot-avx512.cpp), needing AVX only. Internal linkage: each table
// gets its own, compiled for its ISA.
#pragma once
#include <immintrin.h>

namespace ember {
namespace {

// Running sums of several rows kept in the lanes of one vector (lane r: row r): adds each row's 8 block products to
// its lane one block at a time, in block order, so every lane sees the very additions of the scalar loop
// `for k in 0..7: sum[r] += p[r][k]` (the same bits), with the rows transposed instead of 8 scalar adds per row.
inline void add_in_order4(__m128& acc, __m256 p0, __m256 p1, __m256 p2, __m256 p3) {
    const __m256 a = _mm256_unpacklo_ps(p0, p1), b = _mm256_unpackhi_ps(p0, p1);
    const __m256 c = _mm256_unpacklo_ps(p2, p3), d = _mm256_unpackhi_ps(p2, p3);
    const __m256 k0 = _mm256_shuffle_ps(a, c, _MM_SHUFFLE(1, 0, 1, 0));  // blocks 0 | 4 of the 4 rows
    const __m256 k1 = _mm256_shuffle_ps(a, c, _MM_SHUFFLE(3, 2, 3, 2));  // blocks 1 | 5
    const __m256 k2 = _mm256_shuffle_ps(b, d, _MM_SHUFFLE(1, 0, 1, 0));  // blocks 2 | 6
    const __m256 k3 = _mm256_shuffle_ps(b, d, _MM_SHUFFLE(3, 2, 3, 2));  // blocks 3 | 7
    acc = _mm_add_ps(acc, _mm256_castps256_ps128(k0));
    acc = _mm_add_ps(acc, _mm256_castps256_ps128(k1));
    acc = _mm_add_ps(acc, _mm256_castps256_ps128(k2));
    acc = _mm_add_ps(acc, _mm256_castps256_ps128(k3));
    acc = _mm_add_ps(acc, _mm256_extractf128_ps(k0, 1));
    acc = _mm_add_ps(acc, _mm256_extractf128_ps(k1, 1));
    acc = _mm_add_ps(acc, _mm256_extractf128_ps(k2, 1));
    acc = _mm_add_ps(acc, _mm256_extractf128_ps(k3, 1));
}
// N rows' products (N >= 2) into acc[0] (rows 0-3) and acc[1] (rows 4-7); missing rows of a group add zeros.
template <int N>
inline void add_in_order(__m128* acc, const __m256* prod) {
    const __m256 z = _mm256_setzero_ps();
    for (int g = 0; g < N; g += 4)
        add_in_order4(acc[g / 4], prod[g], g + 1 < N ? prod[g + 1] : z, g + 2 < N ? prod[g + 2] : z,
                      g + 3 < N ? prod[g + 3] : z);
}
// The N sums held by acc (as add_in_order fills it) into out[0, N).
template <int N>
inline void sums_out(const __m128* acc, float* out) {
    alignas(16) float lanes[4 * ((N + 3) / 4)];
    for (int g = 0; g < (N + 3) / 4; g++) _mm_store_ps(lanes + 4 * g, acc[g]);
    for (int i = 0; i < N; i++) out[i] = lanes[i];
}

// The running float sums of N rows (or of one row against N vectors) of a quantized dot kernel: each step puts each
// row's 8 block products, then adds them in block order; one row adds them with scalar adds, several in vector lanes
// (add_in_order). After the last 8-block step, flush(); the last blocks then add to sum[] one by one.
template <int N>
struct BlockSums {
    float sum[N] = {};
    __m128 acc[(N + 3) / 4];
    __m256 prods[N];
    BlockSums() {
        for (auto& a : acc) a = _mm_setzero_ps();
    }
    void put(int r, __m256 prod) {
        if constexpr (N == 1) {
            alignas(32) float p[8];
            _mm256_store_ps(p, prod);
            for (int k = 0; k < 8; k++) sum[r] += p[k];
        } else {
            prods[r] = prod;
        }
    }
    void step() {
        if constexpr (N > 1) add_in_order<N>(acc, prods);
    }
    void flush() {
        if constexpr (N > 1) sums_out<N>(acc, sum);
    }
};

}  // namespace
}  // namespace ember
