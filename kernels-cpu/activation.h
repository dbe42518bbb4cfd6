// Gated FFN activations: out = act(gate) * up, elementwise over n values.
#pragma once
#include <cstdint>

namespace ember {

void swiglu(float* out, const float* gate, const float* up, int64_t n);  // act = SiLU: x / (1 + e^-x)
void reglu(float* out, const float* gate, const float* up, int64_t n);   // act = ReLU (ReluLLaMA, ProSparse)

}  // namespace ember
