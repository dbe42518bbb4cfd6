// The AVX2 kernel table again, its software prefetches bringing weight bytes into L2 instead of L1 (the faster choice
// on some cores; dot.h, PrefetchLevel).
#define EMBER_PREFETCH_L2 1
#include "kernels-cpu/dot-avx2.cpp"
