// The SIMD tables' software prefetch (dot-avx2.cpp, dot-avx512.cpp): into L1 (prefetcht0), or into L2 (prefetcht1)
// where the file is compiled with EMBER_PREFETCH_L2 (dot-l2-*.cpp). Internal linkage: each table gets its own.
#pragma once
#include <immintrin.h>

namespace ember {
namespace {

inline void prefetch(const void* p) {
#if defined(EMBER_PREFETCH_L2)
    _mm_prefetch((const char*)p, _MM_HINT_T1);
#else
    _mm_prefetch((const char*)p, _MM_HINT_T0);
#endif
}

}  // namespace
}  // namespace ember
