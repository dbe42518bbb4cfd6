// Internal to kernels-cpu (and its tests/benchmark): the per-ISA kernel tables behind dot.h's dispatch.
// dot.cpp holds the portable table and picks one at run time; dot-avx2.cpp / dot-avx512.cpp hold the others.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels-cpu/dtype.h"

namespace ember {

struct DotKernels {
    const char* name;  // "avx512vnni", "avx512", "avx2" or "scalar"
    // As dot_row / dot_rows in dot.h.
    float (*dot_row)(DType wt, const void* w, const void* xq, int64_t n);
    void (*dot_rows)(DType wt, const void* w, size_t row_stride_bytes, const void* xq, float* y, int64_t n_rows,
                     int64_t n);
    // Bit-identical to the scalar dequantizer (every conversion involved is exact or one IEEE multiply).
    void (*dequantize_row)(DType t, const void* x, float* y, int64_t n);
    // Bit-identical to quantize_row(DTYPE_Q8_0, ...): used for activations in dot_prepare_vec.
    void (*quantize_row_q8_0)(const float* x, void* y, int64_t n);
    // As dot_row, with the same bits; but while w streams, the row at `next` (the next row the caller will read, for
    // rows gathered from scattered places) is prefetched at the same offsets instead of w's own continuation.
    float (*dot_row_prefetch)(DType wt, const void* w, const void* next, const void* xq, int64_t n);
    // y[0, n) += a * w[0, n), w (part of) a row of type t dequantized on the fly: sparse_down's inner loop.
    // n: a multiple of dtype_block_elems(t); w starts on a block boundary. The SIMD tables round once per element
    // (one FMA: y + a * w, or y + (a * d) * q for Q8_0/Q4_0 with d the block scale), the scalar table twice
    // (y + a * w as dequantize_row's w): they agree to float rounding, not bit for bit.
    void (*axpy_row)(DType t, const void* w, float a, float* y, int64_t n);
    // y[0, n) += a[0] * rows[0][0, n) + ... + a[n_rows - 1] * rows[n_rows - 1][0, n), added in row order: per element
    // the same operations as n_rows axpy_row calls, so the same bits. The SIMD tables load and store y once per
    // group of 8 rows (not once per row), and while a group streams they prefetch the rows about 8 KiB further on.
    void (*axpy_rows)(DType t, const void* const* rows, const float* a, int64_t n_rows, float* y, int64_t n);
    // ys[i] = dot_row(wt, w, xs[i], n) for i in [0, n_x), the same bits: one row against several activation vectors
    // (a prompt's tokens that use it), the row loaded once for all of them, prefetching `next` as dot_row_prefetch
    // does. Null in tables without it: the caller then calls dot_row_prefetch and dot_row per vector.
    void (*dot_row_xs)(DType wt, const void* w, const void* next, const void* const* xs, int n_x, float* ys,
                       int64_t n);
    // ys[i] = dot_row_prefetch(wt, rows[i], nexts[i], xq, n) for i in [0, n_rows), the same bits: rows gathered from
    // scattered places (a sparse FFN's active neurons), several at a time so that they share the activations' loads
    // and per-block work. Null in tables without it: the caller then calls dot_row_prefetch per row.
    void (*dot_rows_gather)(DType wt, const void* const* rows, const void* const* nexts, const void* xq, float* ys,
                            int64_t n_rows, int64_t n);
};

// dot_rows_gather reads its rows in passes of up to this many (AVX2's Q8_0 rows: one): a caller choosing which rows
// to prefetch (nexts) reaches past the current pass by asking for rows a multiple of it further on.
constexpr int kGatherPassRows = 4;

// Tables; only call the ISA ones where the CPU supports them (dot_kernels_for checks).
const DotKernels* dot_kernels_portable();
#if defined(EMBER_X86)
const DotKernels* dot_kernels_avx2();
const DotKernels* dot_kernels_avx512();
const DotKernels* dot_kernels_avx512vnni();  // dot_kernels_avx512's, with VNNI byte products
// The same kernels with their software prefetches into L2 (dot-l2-*.cpp).
const DotKernels* dot_kernels_avx2_l2();
const DotKernels* dot_kernels_avx512_l2();
const DotKernels* dot_kernels_avx512vnni_l2();
#endif

// The table for a level ("avx512vnni", "avx512", "avx2", "scalar") prefetching as dot_prefetch_level() says now, or
// nullptr if this CPU or build lacks it.
const DotKernels* dot_kernels_for(const char* level);
// The table dot_row/dot_rows/matvec use now: the best level unless dot_force_simd_level chose another.
const DotKernels* dot_kernels();
// For tests and benchmarks: make every later dispatch use `level` (throws if unsupported here); nullptr = best.
void dot_force_simd_level(const char* level);

// Keeps a value opaque to the optimizer so that `sum += d * (float)isum` is never contracted into an FMA:
// the quantized dot products must round the product and the sum separately, as the scalar reference does.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define EMBER_NO_CONTRACT(v) __asm__("" : "+x"(v))
#elif defined(__GNUC__) && defined(__aarch64__)
#define EMBER_NO_CONTRACT(v) __asm__("" : "+w"(v))
#else
#define EMBER_NO_CONTRACT(v) ((void)0)
#endif

}  // namespace ember
