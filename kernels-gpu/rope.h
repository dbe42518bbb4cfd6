// Rotary position embedding on the GPU; mirrors kernels-cpu/rope.h. Pointers are device memory.
#pragma once
#include <cuda_runtime.h>

#include "kernels-cpu/rope.h"

namespace ember::gpu {

// x: (n_heads, head_dim) for one token at position pos, rotated in place.
void rope(float* x, int n_heads, int pos, const RopeParams& p, cudaStream_t stream);
// x: (n_tokens, n_heads, head_dim), token i at position pos0 + i: the prompt's tokens in one launch.
void rope_tokens(float* x, int n_tokens, int n_heads, int pos0, const RopeParams& p, cudaStream_t stream);

}  // namespace ember::gpu
