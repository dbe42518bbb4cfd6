// Rotary position embedding on the GPU; mirrors kernels-cpu/rope.h. Pointers are device memory.
#pragma once
#include <cuda_runtime.h>

#include "kernels-cpu/dtype.h"
#include "kernels-cpu/rope.h"

namespace ember::gpu {

// x: (n_heads, head_dim) for one token at position pos, rotated in place.
void rope(float* x, int n_heads, int pos, const RopeParams& p, cudaStream_t stream);
// x: (n_tokens, n_heads, head_dim), token i at position pos0 + i: the prompt's tokens in one launch.
void rope_tokens(float* x, int n_tokens, int n_heads, int pos0, const RopeParams& p, cudaStream_t stream);

// One decode token at the position *pos, read on the device (a captured CUDA graph then replays for any position):
// q (n_heads, head_dim) rotated in place; k (n_kv_heads, head_dim) rotated into row *pos of k_cache and v copied
// into row *pos of v_cache (rows of kv_stride elements of k_type / v_type: F32, or F16 rounded to nearest even).
// The same floats as rope on q and k and the two copies. Throws ember::Error for another cache type.
void rope_store_kv(float* q, int n_heads, const float* k, const float* v, int n_kv_heads, void* k_cache, DType k_type,
                   void* v_cache, DType v_type, int64_t kv_stride, const int* pos, const RopeParams& p,
                   cudaStream_t stream);

}  // namespace ember::gpu
