// The AVX512-VNNI kernel table again, its software prefetches bringing weight bytes into L2 instead of L1 (the
// faster choice on some cores; dot.h, PrefetchLevel).
#define EMBER_AVX512_VNNI 1
#define EMBER_PREFETCH_L2 1
#include "kernels-cpu/dot-avx512.cpp"
