// Elementwise steps of a layer on the GPU; mirror kernels-cpu/activation.h and the residual additions of
// models/llama.cpp. Pointers are device memory.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ember::gpu {

// dst[i] = x[i] as IEEE half bits, rounded to nearest even (as kernels-cpu's f32_to_fp16), for i in [0, n).
void f32_to_f16(uint16_t* dst, const float* x, int64_t n, cudaStream_t stream);

// x[i] += y[i] for i in [0, n).
void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream);
// out[i] = relu(gate[i]) * up[i] (ReGLU); out may alias gate. Unless q8 is null, out also as Q8_0 activations in
// dot_prepare_vec's layout (n a multiple of 32), in the same launch and with the same bits.
void reglu(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream, void* q8 = nullptr);
// out[i] = silu(gate[i]) * up[i] (SwiGLU); out may alias gate; q8 as for reglu.
void swiglu(float* out, const float* gate, const float* up, int64_t n, cudaStream_t stream, void* q8 = nullptr);

// *out = the number of j < *k with h[j] != 0 (*k read on the device, as the sparse FFN kernels read it): how many
// of a ReLU layer's predicted-active neurons fired. One block.
void count_nonzero(const float* h, const int32_t* k, int32_t* out, cudaStream_t stream);

// A batch's predictor mask on its hot neurons: for row r < n_rows and column c < n_cols, h[r * ld_h + c] = 0 unless
// scores[r * ld_scores + c] > threshold (the decode step's predicted set). predicted[r] = how many of row r's
// columns the predictor marked, fired[r] = how many of those are non-zero after the mask (written, not added).
void mask_predicted(float* h, int64_t ld_h, const float* scores, int64_t ld_scores, int n_rows, int n_cols,
                    float threshold, int32_t* predicted, int32_t* fired, cudaStream_t stream);

}  // namespace ember::gpu
