// The SIMD tables' row policies (dot-avx2.cpp, dot-avx512.cpp): where the R rows of one pass of their dot kernels are.
// Internal linkage, as the other *-isa.h helpers.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ember {
namespace {

// The rows are `stride` bytes apart from w, each prefetching pf bytes ahead (dot_rows), or anywhere, each with its own
// prefetch distance (dot_rows_gather).
struct StridedRows {
    const uint8_t* w;
    size_t stride, pf;
    const uint8_t* row(int r) const { return w + r * stride; }
    size_t ahead(int) const { return pf; }
};
struct GatheredRows {
    const uint8_t* const* w;
    const size_t* pf;
    const uint8_t* row(int r) const { return w[r]; }
    size_t ahead(int r) const { return pf[r]; }
};

}  // namespace
}  // namespace ember
