// Scaled dot-product attention of one query token over a KV cache, with grouped-query heads
// (Ainslie et al. 2023): query head h reads KV head h / (n_heads / n_kv_heads).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels-cpu/dtype.h"
#include "kernels-cpu/thread-pool.h"

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
// (the products in float); F32 ones are read as they are. The reference: one head at a time, each reading its KV
// head's keys and values.
void attention_heads(const AttentionArgs& a, int head_begin, int head_end);

// Grouped attention, as the engine runs it: the query heads that share a KV head are computed together, so that each
// key and value row is read from memory once for all of them, over ranges of kAttentionRange positions. A range
// leaves per head an unnormalised softmax (m = max score, l = sum exp(score - m), o = sum exp(score - m) v_t), and
// attention_combine_head adds a head's ranges. The ranges depend on n_kv alone and each range's partials and the
// combination are computed the same way whoever runs them, so a head's output has the same bits whether its ranges
// run on one thread or on several.
constexpr int kAttentionRange = 512;
inline int attention_ranges(int n_kv) { return (n_kv + kAttentionRange - 1) / kAttentionRange; }

// One token's partials: for head h of [head0, head0 + n_heads) and range r of n_ranges, o at
// o + ((h - head0) * n_ranges + r) * head_dim, m and l at index (h - head0) * n_ranges + r.
struct AttentionPartials {
    float* o;
    float* m;
    float* l;
    int head0 = 0;
    int n_ranges = 0;
};
// Floats of partials for n_heads heads and n_ranges ranges of head_dim (o, m and l in one buffer), and the
// partials laid out in such a buffer.
inline size_t attention_partials_floats(int n_heads, int n_ranges, int head_dim) {
    return (size_t)n_heads * n_ranges * (head_dim + 2);
}
AttentionPartials attention_partials_in(float* buf, int head0, int n_heads, int n_ranges, int head_dim);

// The partials of range `range` of positions for every query head of KV head kv_head (heads kv_head * group ..
// + group - 1, group = n_heads / n_kv_heads). scores: group * kAttentionRange floats of scratch.
void attention_group_range(const AttentionArgs& a, int kv_head, int range, const AttentionPartials& part,
                           float* scores);

// a.out's row of head h from its ranges' partials: sum_r e^(m_r - M) o_r / sum_r e^(m_r - M) l_r, M = max m_r.
void attention_combine_head(const AttentionArgs& a, const AttentionPartials& part, int h);

// Every head of KV head kv_head's group, all ranges on the calling thread: attention_group_range for each range, then
// attention_combine_head for each head. part: partials for the group's heads (head0 = kv_head * group) and
// attention_ranges(a.n_kv) ranges; scores as for attention_group_range.
void attention_group(const AttentionArgs& a, int kv_head, const AttentionPartials& part, float* scores);

// Every head of n tokens over the pool, as the engine runs attention (args[i]: token i's, each with its own n_kv,
// out and caches; scores unused). Work items are (token, KV head) pairs running attention_group; where those are fewer
// than two per thread and some token has several ranges (a decode step over a long context), the items are (token,
// KV head, range) with partials in `partials` (grown as needed), then (token, head) combinations. Same bits either
// way, for any thread count.
void attention_tokens(const AttentionArgs* args, int n, std::vector<float>& partials, ThreadPool& pool);

}  // namespace ember
