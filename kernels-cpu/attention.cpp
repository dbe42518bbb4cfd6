#include "kernels-cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/exp.h"

namespace ember {

namespace {

// out (head_dim) = sum_t p_t v_t over an F32 cache, four positions per pass so that out is loaded and stored a
// quarter as often.
void weighted_values_f32(const float* v, int64_t stride, const float* p, int n_kv, float* __restrict out, int d) {
    std::memset(out, 0, sizeof(float) * d);
    int t = 0;
    for (; t + 4 <= n_kv; t += 4) {
        const float* __restrict v0 = v + (int64_t)t * stride;
        const float* __restrict v1 = v0 + stride;
        const float* __restrict v2 = v1 + stride;
        const float* __restrict v3 = v2 + stride;
        const float p0 = p[t], p1 = p[t + 1], p2 = p[t + 2], p3 = p[t + 3];
        for (int i = 0; i < d; i++) out[i] += p0 * v0[i] + p1 * v1[i] + p2 * v2[i] + p3 * v3[i];
    }
    for (; t < n_kv; t++) {
        const float* __restrict vt = v + (int64_t)t * stride;
        for (int i = 0; i < d; i++) out[i] += p[t] * vt[i];
    }
}

void check_cache_types(const char* fn, const AttentionArgs& a) {
    if (!kv_cache_type_supported(a.k_type) || !kv_cache_type_supported(a.v_type))
        throw std::invalid_argument(std::string(fn) + ": KV cache of " + dtype_name(a.k_type) + " keys and " +
                                    dtype_name(a.v_type) + " values, expected f32 or f16");
}

// Positions a group's heads take in turns while their rows stay in cache: 128 keys of 128 F32 elements are 64 KiB.
constexpr int kGroupTile = 128;

}  // namespace

void attention_heads(const AttentionArgs& a, int head_begin, int head_end) {
    check_cache_types("attention_heads", a);
    const int group = a.n_heads / a.n_kv_heads;
    const size_t k_elem = dtype_row_bytes(a.k_type, 1), v_elem = dtype_row_bytes(a.v_type, 1);
    thread_local std::vector<const void*> v_rows;  // F16 values: the positions' rows of this head
    for (int h = head_begin; h < head_end; h++) {
        const float* q = a.q + (int64_t)h * a.head_dim;
        const int64_t kv_off = (int64_t)(h / group) * a.head_dim;
        // scores = q . k_t * scale: one SIMD pass over the keys (dot_rows, several keys at a time; a plain float
        // loop here is one dependent add per element and dominated batched prompt time), then a stable softmax.
        dot_rows(a.k_type, static_cast<const uint8_t*>(a.k_cache) + kv_off * k_elem, k_elem * a.kv_stride, q,
                 a.scores, a.n_kv, a.head_dim);
        float max_score = -INFINITY;
        for (int t = 0; t < a.n_kv; t++) {
            a.scores[t] *= a.scale;
            max_score = std::max(max_score, a.scores[t]);
        }
        double sum = 0.0;
        for (int t = 0; t < a.n_kv; t++) {
            a.scores[t] = std::exp(a.scores[t] - max_score);
            sum += a.scores[t];
        }
        const float inv_sum = (float)(1.0 / sum);
        for (int t = 0; t < a.n_kv; t++) a.scores[t] *= inv_sum;
        // out = sum_t p_t v_t
        float* out = a.out + (int64_t)h * a.head_dim;
        const uint8_t* v = static_cast<const uint8_t*>(a.v_cache) + kv_off * v_elem;
        if (a.v_type == DType::DTYPE_F32) {
            weighted_values_f32(reinterpret_cast<const float*>(v), a.kv_stride, a.scores, a.n_kv, out, a.head_dim);
        } else {
            if ((int)v_rows.size() < a.n_kv) v_rows.resize((size_t)a.n_kv);
            for (int t = 0; t < a.n_kv; t++) v_rows[(size_t)t] = v + (size_t)t * v_elem * (size_t)a.kv_stride;
            std::memset(out, 0, sizeof(float) * a.head_dim);
            dot_kernels()->axpy_rows(a.v_type, v_rows.data(), a.scores, a.n_kv, out, a.head_dim);
        }
    }
}

AttentionPartials attention_partials_in(float* buf, int head0, int n_heads, int n_ranges, int head_dim) {
    AttentionPartials p;
    p.o = buf;
    p.m = buf + (size_t)n_heads * n_ranges * head_dim;
    p.l = p.m + (size_t)n_heads * n_ranges;
    p.head0 = head0;
    p.n_ranges = n_ranges;
    return p;
}

void attention_group_range(const AttentionArgs& a, int kv_head, int range, const AttentionPartials& part,
                           float* scores) {
    check_cache_types("attention_group_range", a);
    const int group = a.n_heads / a.n_kv_heads, d = a.head_dim;
    const int t0 = range * kAttentionRange, t1 = std::min(t0 + kAttentionRange, a.n_kv), len = t1 - t0;
    const size_t k_elem = dtype_row_bytes(a.k_type, 1), v_elem = dtype_row_bytes(a.v_type, 1);
    const size_t k_row = k_elem * a.kv_stride, v_row = v_elem * a.kv_stride;
    const int64_t kv_off = (int64_t)kv_head * d;
    const uint8_t* k = static_cast<const uint8_t*>(a.k_cache) + kv_off * k_elem + (size_t)t0 * k_row;
    const uint8_t* v = static_cast<const uint8_t*>(a.v_cache) + kv_off * v_elem + (size_t)t0 * v_row;
    const int h0 = kv_head * group;
    // Scores, a tile of keys at a time: the group's heads pass over it in turn while it is in cache.
    for (int s0 = 0; s0 < len; s0 += kGroupTile) {
        const int n = std::min(kGroupTile, len - s0);
        for (int j = 0; j < group; j++)
            dot_rows(a.k_type, k + (size_t)s0 * k_row, k_row, a.q + (int64_t)(h0 + j) * d,
                     scores + (size_t)j * kAttentionRange + s0, n, d);
    }
    for (int j = 0; j < group; j++) {
        float* s = scores + (size_t)j * kAttentionRange;
        // Loops that vectorize: the scaling, 8 running maxima, exp_nonpositive (exp.h) rather than the library
        // call, 8 running sums added in double at the end.
        for (int t = 0; t < len; t++) s[t] *= a.scale;
        float lane_max[8], lane_sum[8];
        for (int u = 0; u < 8; u++) lane_max[u] = -INFINITY, lane_sum[u] = 0.0f;
        int t = 0;
        for (; t + 8 <= len; t += 8) {
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) lane_max[u] = std::max(lane_max[u], s[t + u]);
        }
        float mx = -INFINITY;
        for (; t < len; t++) mx = std::max(mx, s[t]);
        for (int u = 0; u < 8; u++) mx = std::max(mx, lane_max[u]);
        for (t = 0; t < len; t++) s[t] = exp_nonpositive(s[t] - mx);
        for (t = 0; t + 8 <= len; t += 8) {
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) lane_sum[u] += s[t + u];
        }
        double sum = 0.0;
        for (; t < len; t++) sum += s[t];
        for (int u = 0; u < 8; u++) sum += lane_sum[u];
        const int64_t idx = (int64_t)(h0 + j - part.head0) * part.n_ranges + range;
        part.m[idx] = mx;
        part.l[idx] = (float)sum;
        std::memset(part.o + idx * d, 0, sizeof(float) * d);
    }
    // Values, the same way, through the dispatch table's axpy (8 rows a pass over o, in the widest SIMD the CPU has).
    const void* v_rows[kGroupTile];
    for (int s0 = 0; s0 < len; s0 += kGroupTile) {
        const int n = std::min(kGroupTile, len - s0);
        for (int t = 0; t < n; t++) v_rows[t] = v + (size_t)(s0 + t) * v_row;
        for (int j = 0; j < group; j++) {
            const float* p = scores + (size_t)j * kAttentionRange + s0;
            float* o = part.o + ((int64_t)(h0 + j - part.head0) * part.n_ranges + range) * d;
            dot_kernels()->axpy_rows(a.v_type, v_rows, p, n, o, d);
        }
    }
}

void attention_combine_head(const AttentionArgs& a, const AttentionPartials& part, int h) {
    const int d = a.head_dim, n_ranges = attention_ranges(a.n_kv);
    const int64_t base = (int64_t)(h - part.head0) * part.n_ranges;
    float* out = a.out + (int64_t)h * d;
    std::memset(out, 0, sizeof(float) * d);
    if (n_ranges == 0) return;  // no positions: zeros
    float mx = -INFINITY;
    for (int r = 0; r < n_ranges; r++) mx = std::max(mx, part.m[base + r]);
    double l = 0.0;
    for (int r = 0; r < n_ranges; r++) {
        const float w = std::exp(part.m[base + r] - mx);
        l += (double)w * part.l[base + r];
        const float* o = part.o + (base + r) * d;
        for (int i = 0; i < d; i++) out[i] += w * o[i];
    }
    const float inv = (float)(1.0 / l);
    for (int i = 0; i < d; i++) out[i] *= inv;
}

void attention_group(const AttentionArgs& a, int kv_head, const AttentionPartials& part, float* scores) {
    const int group = a.n_heads / a.n_kv_heads, n_ranges = attention_ranges(a.n_kv);
    for (int r = 0; r < n_ranges; r++) attention_group_range(a, kv_head, r, part, scores);
    for (int j = 0; j < group; j++) attention_combine_head(a, part, kv_head * group + j);
}

void attention_tokens(const AttentionArgs* args, int n, std::vector<float>& partials, ThreadPool& pool) {
    if (n <= 0) return;
    const int n_heads = args[0].n_heads, n_kv_heads = args[0].n_kv_heads, head_dim = args[0].head_dim;
    const int group = n_heads / n_kv_heads;
    for (int i = 0; i < n; i++) check_cache_types("attention_tokens", args[i]);
    int max_ranges = 1;
    for (int i = 0; i < n; i++) max_ranges = std::max(max_ranges, attention_ranges(args[i].n_kv));
    const int64_t pairs = (int64_t)n * n_kv_heads;
    thread_local std::vector<float> scores;  // each thread's scratch, grown once
    auto scores_for = [&]() {
        const size_t want = (size_t)group * kAttentionRange;
        if (scores.size() < want) scores.resize(want);
        return scores.data();
    };
    if (max_ranges == 1 || pairs >= 2 * (int64_t)pool.size()) {
        pool.parallel_for(pairs, 1, [&](int64_t begin, int64_t end) {
            thread_local std::vector<float> part;
            for (int64_t item = begin; item < end; item++) {
                const AttentionArgs& a = args[item / n_kv_heads];
                const int kvh = (int)(item % n_kv_heads), n_ranges = attention_ranges(a.n_kv);
                const size_t need = attention_partials_floats(group, n_ranges, head_dim);
                if (part.size() < need) part.resize(need);
                attention_group(a, kvh, attention_partials_in(part.data(), kvh * group, group, n_ranges, head_dim),
                                scores_for());
            }
        });
        return;
    }
    const size_t per_token = attention_partials_floats(n_heads, max_ranges, head_dim);
    if (partials.size() < per_token * n) partials.resize(per_token * n);
    auto partials_of = [&](int64_t i) {
        return attention_partials_in(partials.data() + per_token * i, 0, n_heads, max_ranges, head_dim);
    };
    pool.parallel_for(pairs * max_ranges, 1, [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; item++) {
            const int64_t pair = item / max_ranges, i = pair / n_kv_heads;
            const int r = (int)(item % max_ranges), kvh = (int)(pair % n_kv_heads);
            if (r < attention_ranges(args[i].n_kv)) attention_group_range(args[i], kvh, r, partials_of(i), scores_for());
        }
    });
    pool.parallel_for((int64_t)n * n_heads, 1, [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; item++)
            attention_combine_head(args[item / n_heads], partials_of(item / n_heads), (int)(item % n_heads));
    });
}

}  // namespace ember
