// Dot product of one weight row with one activation vector, per weight type, with a scalar reference and
// AVX2(+FMA+F16C) / AVX-512 paths chosen at run time.
// The activation is first converted to the weight type's "vec dot type": F32 for F32/F16/BF16 weights,
// Q8_0 for Q8_0/Q4_0 weights (as llama.cpp does, so quantized dot products are integer sums per block).
#pragma once
#include <cstdint>

#include "kernels-cpu/dtype.h"

namespace ember {

DType dot_vec_type(DType weight_type);
// Bytes needed to hold n activations converted to dot_vec_type(weight_type).
size_t dot_vec_bytes(DType weight_type, int64_t n);
// x: n floats -> xq: n activations in dot_vec_type(weight_type).
void dot_prepare_vec(DType weight_type, const float* x, void* xq, int64_t n);

// sum_i w[i] * x[i] over n elements. w: one row of type weight_type; xq: prepared by dot_prepare_vec.
float dot_row(DType weight_type, const void* w, const void* xq, int64_t n);
// y[r] = dot_row(weight_type, w + r * row_stride_bytes, xq, n) for r in [0, n_rows): several rows at a time
// share the activation loads while the weights stream (matvec's inner kernel). Bit-identical to dot_row_ref
// per row for Q8_0/Q4_0; for F32/F16/BF16 equal to dot_row up to float rounding.
void dot_rows(DType weight_type, const void* w, size_t row_stride_bytes, const void* xq, float* y, int64_t n_rows,
              int64_t n);
// Plain scalar version of dot_row, the reference every SIMD path is tested against.
// For Q8_0/Q4_0 both compute, per block, d_w * d_x * (integer sum), summed over blocks in order, so they agree exactly.
// For F32/F16/BF16 the reference accumulates in double.
float dot_row_ref(DType weight_type, const void* w, const void* xq, int64_t n);

// Which SIMD level dot_row uses on this machine: "avx512", "avx2" or "scalar".
const char* dot_simd_level();
// The cache level the SIMD kernels' software prefetches bring weight bytes into: each SIMD level has a table per
// level (prefetcht0 or prefetcht1), switched by the dispatch. Which is faster depends on the core (docs/benchmarks.md:
// L2 on a Zen 5, L1 on a Sapphire Rapids-class Xeon; Zen 1 to 3 fill L1 for both hints). The default is L2 on AMD
// processors and L1 elsewhere; the environment variable EMBER_PREFETCH=l1 or l2 overrides it at start-up. Results
// never depend on it.
enum class PrefetchLevel { PREFETCH_L1, PREFETCH_L2 };
PrefetchLevel dot_prefetch_level_for_this_cpu();  // the default, without EMBER_PREFETCH
PrefetchLevel dot_prefetch_level();
const char* dot_prefetch_level_name();  // "L1" or "L2"
// For benchmarks and tests: the level every later prefetch uses; no kernel may be running.
void dot_set_prefetch_level(PrefetchLevel level);

}  // namespace ember
