// Row conversion between float and the stored weight types. Quantizers match llama.cpp's reference
// quantizers (quantize_row_q8_0_ref / quantize_row_q4_0_ref) bit for bit.
#pragma once
#include <cstdint>

#include "kernels-cpu/dtype.h"

namespace ember {

// x: n floats -> y: one row of type t (n a multiple of dtype_block_elems(t)).
void quantize_row(DType t, const float* x, void* y, int64_t n);
// x: one row of type t -> y: n floats.
void dequantize_row(DType t, const void* x, float* y, int64_t n);

}  // namespace ember
