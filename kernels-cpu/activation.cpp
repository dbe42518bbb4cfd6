#include "kernels-cpu/activation.h"

#include <cmath>

namespace ember {

void swiglu(float* out, const float* gate, const float* up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void reglu(float* out, const float* gate, const float* up, int64_t n) {
    // Exactly zero where the gate is not positive: the sparse FFN relies on those zeros.
    for (int64_t i = 0; i < n; i++) out[i] = gate[i] > 0.0f ? gate[i] * up[i] : 0.0f;
}

}  // namespace ember
