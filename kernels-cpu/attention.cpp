#include "kernels-cpu/attention.h"

#include <cmath>
#include <cstring>

namespace ember {

void attention_heads(const AttentionArgs& a, int head_begin, int head_end) {
    const int group = a.n_heads / a.n_kv_heads;
    for (int h = head_begin; h < head_end; h++) {
        const float* q = a.q + (int64_t)h * a.head_dim;
        const int64_t kv_off = (int64_t)(h / group) * a.head_dim;
        // scores = q . k_t * scale, then a numerically stable softmax.
        float max_score = -INFINITY;
        for (int t = 0; t < a.n_kv; t++) {
            const float* k = a.k_cache + (int64_t)t * a.kv_stride + kv_off;
            float s = 0.0f;
            for (int d = 0; d < a.head_dim; d++) s += q[d] * k[d];
            s *= a.scale;
            a.scores[t] = s;
            if (s > max_score) max_score = s;
        }
        double sum = 0.0;
        for (int t = 0; t < a.n_kv; t++) {
            a.scores[t] = std::exp(a.scores[t] - max_score);
            sum += a.scores[t];
        }
        const float inv_sum = (float)(1.0 / sum);
        float* out = a.out + (int64_t)h * a.head_dim;
        std::memset(out, 0, sizeof(float) * a.head_dim);
        for (int t = 0; t < a.n_kv; t++) {
            const float* v = a.v_cache + (int64_t)t * a.kv_stride + kv_off;
            const float p = a.scores[t] * inv_sum;
            for (int d = 0; d < a.head_dim; d++) out[d] += p * v[d];
        }
    }
}

}  // namespace ember
