#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/predictor-train.h"

namespace ember::gpu {

namespace {

constexpr int kThreads = 256;
constexpr float kB1 = 0.9f, kB2 = 0.999f, kEps = 1e-8f;  // predictor/train.cpp's Adam

int blocks_for(int64_t n) { return (int)((n + kThreads - 1) / kThreads); }

__global__ void gather_rows_kernel(const float* src, const int32_t* ids, int64_t width, float* out) {
    const float* s = src + (int64_t)ids[blockIdx.x] * width;
    float* o = out + (int64_t)blockIdx.x * width;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) o[i] = s[i];
}

__global__ void relu_forward_kernel(float* out, const float* in, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = fmaxf(in[i], 0.0f);
}

__global__ void relu_backward_kernel(float* d, const float* pre, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && pre[i] <= 0.0f) d[i] = 0.0f;
}

// Sums v over the block (tree over the threads' partials in a fixed order); the result is valid in thread 0.
__device__ double block_sum(double v, double* partial) {
    partial[threadIdx.x] = v;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s /= 2) {
        if ((int)threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    const double r = partial[0];
    __syncthreads();  // partial is reused by the next call
    return r;
}

__global__ void bce_gradient_kernel(const float* scores, const uint8_t* fired, const int32_t* ids, int n_ff,
                                    const float* bias, float pw, float inv, float* g, double* row_dsum,
                                    double* row_loss) {
    __shared__ double partial[kThreads];
    const int64_t j = blockIdx.x;
    const float* sj = scores + j * n_ff;
    const uint8_t* y = fired + (int64_t)ids[j] * n_ff;
    float* gj = g + j * n_ff;
    const float b = *bias;
    double dsum = 0.0, lsum = 0.0;
    for (int i = threadIdx.x; i < n_ff; i += kThreads) {
        const float l = sj[i] + b, e = expf(-fabsf(l));
        const float sig = l >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        const float d = y[i] ? pw * (sig - 1.0f) : sig;
        gj[i] = d * inv;
        dsum += d;
        if (row_loss) {
            const float sp = log1pf(e);
            lsum += y[i] ? pw * (fmaxf(-l, 0.0f) + sp) : fmaxf(l, 0.0f) + sp;
        }
    }
    dsum = block_sum(dsum, partial);
    if (row_loss) lsum = block_sum(lsum, partial);
    if (threadIdx.x == 0) {
        row_dsum[j] = dsum;
        if (row_loss) row_loss[j] = lsum / n_ff;
    }
}

__device__ void adam_update(float& w, float g, float& m, float& v, float lr, float c1, float c2) {
    m = kB1 * m + (1.0f - kB1) * g;
    v = kB2 * v + (1.0f - kB2) * g * g;
    w -= lr * (m / c1) / (sqrtf(v / c2) + kEps);
}

__global__ void adam_kernel(float* w, const float* g, float* m, float* v, int64_t n, float lr, float c1, float c2) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) adam_update(w[i], g[i], m[i], v[i], lr, c1, c2);
}

__global__ void bias_adam_kernel(const double* row_dsum, int64_t n, float inv, float* bias, float* m, float* v,
                                 float lr, float c1, float c2) {
    double gb = 0.0;
    for (int64_t j = 0; j < n; j++) gb += row_dsum[j] * inv;
    adam_update(*bias, (float)gb, *m, *v, lr, c1, c2);
}

}  // namespace

void gather_rows(const float* src, const int32_t* ids, int64_t n, int64_t width, float* out, cudaStream_t stream) {
    if (n <= 0 || width <= 0) return;
    gather_rows_kernel<<<(unsigned)n, kThreads, 0, stream>>>(src, ids, width, out);
    CUDA_CHECK_LAUNCH();
}

void relu_forward(float* out, const float* in, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    relu_forward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(out, in, n);
    CUDA_CHECK_LAUNCH();
}

void relu_backward(float* d, const float* pre, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    relu_backward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(d, pre, n);
    CUDA_CHECK_LAUNCH();
}

void bce_gradient(const float* scores, const uint8_t* fired, const int32_t* ids, int64_t n, int n_ff,
                  const float* bias, float pos_weight, float inv, float* g, double* row_dsum, double* row_loss,
                  cudaStream_t stream) {
    if (n <= 0) return;
    bce_gradient_kernel<<<(unsigned)n, kThreads, 0, stream>>>(scores, fired, ids, n_ff, bias, pos_weight, inv, g,
                                                              row_dsum, row_loss);
    CUDA_CHECK_LAUNCH();
}

void adam_step(float* w, const float* g, float* m, float* v, int64_t n, float lr, float c1, float c2,
               cudaStream_t stream) {
    if (n <= 0) return;
    adam_kernel<<<blocks_for(n), kThreads, 0, stream>>>(w, g, m, v, n, lr, c1, c2);
    CUDA_CHECK_LAUNCH();
}

void bias_adam_step(const double* row_dsum, int64_t n, float inv, float* bias, float* m, float* v, float lr, float c1,
                    float c2, cudaStream_t stream) {
    bias_adam_kernel<<<1, 1, 0, stream>>>(row_dsum, n, inv, bias, m, v, lr, c1, c2);
    CUDA_CHECK_LAUNCH();
}

}  // namespace ember::gpu
