#include "kernels-cpu/norm.h"

#include <cmath>

namespace ember {

void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps) {
    // Sum of squares in double, as ggml does, so long rows lose nothing to accumulation order.
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * (double)x[i];
    const float scale = 1.0f / std::sqrt((float)(sum / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

}  // namespace ember
