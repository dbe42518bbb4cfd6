#include "kernels-cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels-cpu/dot.h"

namespace ember {

void attention_heads(const AttentionArgs& a, int head_begin, int head_end) {
    const int group = a.n_heads / a.n_kv_heads;
    for (int h = head_begin; h < head_end; h++) {
        const float* q = a.q + (int64_t)h * a.head_dim;
        const int64_t kv_off = (int64_t)(h / group) * a.head_dim;
        // scores = q . k_t * scale: one SIMD pass over the keys (dot_rows, several keys at a time; a plain float
        // loop here is one dependent add per element and dominated batched prompt time), then a stable softmax.
        dot_rows(DType::DTYPE_F32, a.k_cache + kv_off, sizeof(float) * a.kv_stride, q, a.scores, a.n_kv,
                 a.head_dim);
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
        // out = sum_t p_t v_t, four positions per pass so that out is loaded and stored a quarter as often.
        float* __restrict out = a.out + (int64_t)h * a.head_dim;
        std::memset(out, 0, sizeof(float) * a.head_dim);
        const float* v = a.v_cache + kv_off;
        int t = 0;
        for (; t + 4 <= a.n_kv; t += 4) {
            const float* __restrict v0 = v + (int64_t)t * a.kv_stride;
            const float* __restrict v1 = v0 + a.kv_stride;
            const float* __restrict v2 = v1 + a.kv_stride;
            const float* __restrict v3 = v2 + a.kv_stride;
            const float p0 = a.scores[t] * inv_sum, p1 = a.scores[t + 1] * inv_sum;
            const float p2 = a.scores[t + 2] * inv_sum, p3 = a.scores[t + 3] * inv_sum;
            for (int d = 0; d < a.head_dim; d++) out[d] += p0 * v0[d] + p1 * v1[d] + p2 * v2[d] + p3 * v3[d];
        }
        for (; t < a.n_kv; t++) {
            const float* __restrict vt = v + (int64_t)t * a.kv_stride;
            const float p = a.scores[t] * inv_sum;
            for (int d = 0; d < a.head_dim; d++) out[d] += p * vt[d];
        }
    }
}

}  // namespace ember
