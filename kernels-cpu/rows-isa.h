// The SIMD tables' row policies (dot-avx2.cpp, dot-avx512.cpp): where the R rows of one pass of their dot kernels are.
// Internal linkage, as the other *-isa.h helpers.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

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

// dot_rows_gather's loop: rows[0, n_rows) in passes of up to per_pass (1 to 4) rows, each row prefetching its `next`
// as dot_row_prefetch does (the distance to it, modulo 2^64). pass(std::integral_constant<int, g>, rows of the pass,
// index of its first row) runs one pass of g rows.
template <typename Pass>
void gathered_passes(const void* const* rows, const void* const* nexts, int64_t n_rows, int per_pass, Pass pass) {
    const uint8_t* const* w = (const uint8_t* const*)rows;
    size_t pf[4];
    for (int64_t r = 0; r < n_rows; r += per_pass) {
        const int g = (int)std::min<int64_t>(per_pass, n_rows - r);
        for (int q = 0; q < g; q++) pf[q] = (size_t)((uintptr_t)nexts[r + q] - (uintptr_t)w[r + q]);
        const GatheredRows gr{w + r, pf};
        switch (g) {
            case 4: pass(std::integral_constant<int, 4>(), gr, r); break;
            case 3: pass(std::integral_constant<int, 3>(), gr, r); break;
            case 2: pass(std::integral_constant<int, 2>(), gr, r); break;
            default: pass(std::integral_constant<int, 1>(), gr, r); break;
        }
    }
}

}  // namespace
}  // namespace ember
