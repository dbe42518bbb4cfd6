#include "kernels-cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/dot.h"

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

}  // namespace

void attention_heads(const AttentionArgs& a, int head_begin, int head_end) {
    if (!kv_cache_type_supported(a.k_type) || !kv_cache_type_supported(a.v_type))
        throw std::invalid_argument(std::string("attention_heads: KV cache of ") + dtype_name(a.k_type) + " keys and " +
                                    dtype_name(a.v_type) + " values, expected f32 or f16");
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

}  // namespace ember
