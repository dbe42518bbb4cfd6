// RMSNorm (Zhang & Sennrich 2019): out = x / sqrt(mean(x^2) + eps) * w.
#pragma once
#include <cstdint>

namespace ember {

// x, out: n floats (may alias); w: n floats.
void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps);

}  // namespace ember
