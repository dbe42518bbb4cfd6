// The AVX-512 kernel table again, compiled with AVX512-VNNI: the quantized rows' byte products (Q8_0's and Q4_0's
// unsigned-by-signed pairs) take one vpdpbusd instead of maddubs + madd, with the same int32 sums and so the same
// bits. Chosen at run time on CPUs with VNNI (Cascade Lake and later, Zen 4 and later).
#define EMBER_AVX512_VNNI 1
#include "kernels-cpu/dot-avx512.cpp"
