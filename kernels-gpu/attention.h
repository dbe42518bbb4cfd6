// Scaled dot-product attention over a KV cache of F32 or F16 keys and values (AttentionArgs' k_type, v_type; halves
// read as floats) on the GPU, with grouped-query heads; mirrors kernels-cpu/attention.h and takes its AttentionArgs
// with device pointers. One difference: `scores` is scratch of attention_scratch_floats(...) floats, not n_kv:
// positions are split into chunks computed by separate blocks
// (flash-decoding, Dao et al. 2023), each leaving a partial softmax (max, sum, weighted values) that a second kernel
// combines, so that one token's few heads still spread the cache reads over the whole GPU.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "kernels-cpu/attention.h"

namespace ember::gpu {

// Scratch floats for n_tokens tokens attending at most n_kv positions with n_heads heads of head_dim.
size_t attention_scratch_floats(int n_kv, int n_heads, int head_dim, int n_tokens = 1);

// Decode: heads [head_begin, head_end) of one token over positions 0 .. a.n_kv-1. head_dim <= 256; throws
// ember::Error otherwise, when n_heads is not a multiple of n_kv_heads, or for a cache type other than F32 and F16.
void attention_heads(const AttentionArgs& a, int head_begin, int head_end, cudaStream_t stream);

// Decode as attention_heads, over positions 0 .. *pos, read on the device (a captured CUDA graph then replays for any
// position). The grid comes from a.n_kv, which only has to split into as many chunks as *pos + 1
// (attention_splits(*pos + 1) == attention_splits(a.n_kv)), larger or smaller; a.scores as for a.n_kv.
// out_q8, unless null, receives a.out (all a.n_heads * a.head_dim floats of the token) as Q8_0 activations in
// dot_prepare_vec's layout, written for the heads computed, in the same launch (head_dim a multiple of 32).
void attention_heads_at(const AttentionArgs& a, const int* pos, int head_begin, int head_end, cudaStream_t stream,
                        void* out_q8 = nullptr);
// Chunks of positions the decode kernels spread n_kv positions over (each a block per head).
int attention_splits(int n_kv);

// Prefill: a batch of n_tokens tokens whose keys and values are already in the cache at positions
// pos0 .. pos0+n_tokens-1; token i attends positions 0 .. pos0+i (causal mask). a.q and a.out are
// (n_tokens, n_heads, head_dim); a.n_kv must be pos0 + n_tokens; a.scores holds
// attention_scratch_floats(a.n_kv, a.n_heads, a.head_dim, n_tokens) floats. All heads.
void attention_prefill(const AttentionArgs& a, int n_tokens, int pos0, cudaStream_t stream);

}  // namespace ember::gpu
