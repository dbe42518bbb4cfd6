// Scaled dot-product attention of one query token over a float KV cache, with grouped-query heads
// (Ainslie et al. 2023): query head h reads KV head h / (n_heads / n_kv_heads).
#pragma once
#include <cstdint>

namespace ember {

struct AttentionArgs {
    const float* q;        // (n_heads, head_dim): this token's queries, RoPE applied
    const float* k_cache;  // (n_kv, kv_stride): keys of positions 0 .. n_kv-1, RoPE applied
    const float* v_cache;  // (n_kv, kv_stride): values
    float* out;            // (n_heads, head_dim)
    float* scores;         // scratch: n_kv floats
    int n_kv = 0;          // positions attended (causal: this token's position + 1)
    int n_heads = 0;
    int n_kv_heads = 0;
    int head_dim = 0;
    int64_t kv_stride = 0;  // floats between positions in the caches (n_kv_heads * head_dim)
    float scale = 1.0f;     // 1 / sqrt(head_dim)
};

// Computes heads [head_begin, head_end) of one token.
void attention_heads(const AttentionArgs& a, int head_begin, int head_end);

}  // namespace ember
