// The elementwise and reduction steps of predictor training (predictor/train.h) on the GPU; the products go through
// cuBLAS SGEMM in predictor/train-gpu.cpp. Each mirrors a loop of predictor/train.cpp's fit and keeps its arithmetic:
// the same formulas in float, the per-sample sums in double and in the same order where the result feeds the next
// step. Pointers are device memory.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ember::gpu {

// out row j (width floats) = src row ids[j], for j in [0, n): one minibatch's FFN inputs gathered from the samples.
void gather_rows(const float* src, const int32_t* ids, int64_t n, int64_t width, float* out, cudaStream_t stream);

// out[i] = max(in[i], 0); out may alias in.
void relu_forward(float* out, const float* in, int64_t n, cudaStream_t stream);
// d[i] = 0 where pre[i] <= 0 (the ReLU's derivative applied to the gradient d in place).
void relu_backward(float* d, const float* pre, int64_t n, cudaStream_t stream);

// The weighted binary cross-entropy of predictor_train on logits l = scores + *bias, for n rows of n_ff: row j's
// labels are fired row ids[j] (1 = fired). Per entry d = pos_weight * (sigmoid(l) - 1) if fired, else sigmoid(l);
// g = d * inv. Per row: row_dsum[j] = sum of d (in double); when row_loss is not null, row_loss[j] = mean over the
// row of the loss pos_weight * softplus(-l) if fired, else softplus(l). One block per row, reducing in a fixed order:
// the same sums on every run.
void bce_gradient(const float* scores, const uint8_t* fired, const int32_t* ids, int64_t n, int n_ff,
                  const float* bias, float pos_weight, float inv, float* g, double* row_dsum, double* row_loss,
                  cudaStream_t stream);

// One Adam step (Kingma & Ba, 2015) over n weights: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
// w -= lr (m / c1) / (sqrt(v / c2) + eps), with b1 = 0.9, b2 = 0.999, eps = 1e-8 and c1, c2 the bias corrections
// 1 - b^t of step t.
void adam_step(float* w, const float* g, float* m, float* v, int64_t n, float lr, float c1, float c2,
               cudaStream_t stream);

// The bias's Adam step: its gradient is the sum of row_dsum[j] * inv over j in [0, n), added in ascending order; bias,
// m and v are single device floats. One thread, so the sum's order is fixed.
void bias_adam_step(const double* row_dsum, int64_t n, float inv, float* bias, float* m, float* v, float lr, float c1,
                    float c2, cudaStream_t stream);

}  // namespace ember::gpu
