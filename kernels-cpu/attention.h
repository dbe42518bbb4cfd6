// Scaled dot-product attention of one query token over a KV cache, with grouped-query heads
// (Ainslie et al. 2023): query head h reads KV head h / (n_heads / n_kv_heads).
#pragma once
#include <cstdint>

#include "kernels-cpu/dtype.h"

namespace ember {

struct AttentionArgs {
    const float* q;         // (n_heads, head_dim): this token's queries, RoPE applied
    const void* k_cache;    // (n_kv, kv_stride) of k_type: keys of positions 0 .. n_kv-1, RoPE applied
    const void* v_cache;    // (n_kv, kv_stride) of v_type: values
    float* out;             // (n_heads, head_dim)
    float* scores;          // scratch: n_kv floats
    int n_kv = 0;           // positions attended (causal: this token's position + 1)
    int n_heads = 0;
    int n_kv_heads = 0;
    int head_dim = 0;
    int64_t kv_stride = 0;  // elements between positions in the caches (n_kv_heads * head_dim)
    float scale = 1.0f;     // 1 / sqrt(head_dim)
    DType k_type = DType::DTYPE_F32;  // the caches' element types: F32 or F16 (CPU and GPU kernels)
    DType v_type = DType::DTYPE_F32;
};

// The KV cache element types the attention kernels (CPU and GPU) read: F32 and F16.
inline bool kv_cache_type_supported(DType t) { return t == DType::DTYPE_F32 || t == DType::DTYPE_F16; }

// Computes heads [head_begin, head_end) of one token. F16 caches go through the dispatch table's F16 dot and axpy
// (the products in float); F32 ones are read as they are.
void attention_heads(const AttentionArgs& a, int head_begin, int head_end);

}  // namespace ember
