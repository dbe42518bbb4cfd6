#include "kernels-cpu/rope.h"

#include <cmath>
#include <vector>

namespace ember {

void rope(float* x, int n_heads, int pos, const RopeParams& p) {
    // theta advances by a constant factor per pair, computed by repeated multiplication as ggml does, so
    // our angles round the same way as the reference implementation's. The angles depend on the position and the
    // pair only: their cosines and sines are computed once and applied to every head.
    const float theta_scale = std::pow(p.freq_base, -2.0f / (float)p.n_rot);
    const int half = p.n_rot / 2;
    thread_local std::vector<float> cs;  // cos, sin of pair i at 2i, 2i + 1
    if ((int)cs.size() < 2 * half) cs.resize((size_t)2 * half);
    float theta = (float)pos;
    for (int i = 0; i < half; i++) {
        const float angle = theta * p.freq_scale;
        cs[2 * i] = std::cos(angle);
        cs[2 * i + 1] = std::sin(angle);
        theta *= theta_scale;
    }
    for (int h = 0; h < n_heads; h++) {
        float* xh = x + (int64_t)h * p.head_dim;
        for (int i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const int i0 = p.neox ? i : 2 * i;
            const int i1 = p.neox ? i + half : 2 * i + 1;
            const float x0 = xh[i0], x1 = xh[i1];
            xh[i0] = x0 * c - x1 * s;
            xh[i1] = x0 * s + x1 * c;
        }
    }
}

}  // namespace ember
