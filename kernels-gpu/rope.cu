#include <cmath>

#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/rope.h"

namespace ember::gpu {

namespace {

constexpr int kThreads = 256;

// One thread per (head, pair) of one token (blockIdx.y). theta_i = pos * theta_scale^i is built by i multiplications,
// as the CPU loop builds it, so the angles are the same floats.
__global__ void rope_kernel(float* __restrict__ x, int n_heads, int pos0, RopeParams p, float theta_scale) {
    const int half = p.n_rot / 2;
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n_heads * half) return;
    const int h = idx / half, i = idx % half;
    float* xh = x + ((int64_t)blockIdx.y * n_heads + h) * p.head_dim;
    float theta = (float)(pos0 + (int)blockIdx.y);
    for (int j = 0; j < i; j++) theta *= theta_scale;
    const float angle = theta * p.freq_scale;
    const float c = cosf(angle), s = sinf(angle);
    const int i0 = p.neox ? i : 2 * i;
    const int i1 = p.neox ? i + half : 2 * i + 1;
    const float x0 = xh[i0], x1 = xh[i1];
    xh[i0] = x0 * c - x1 * s;
    xh[i1] = x0 * s + x1 * c;
}

}  // namespace

void rope_tokens(float* x, int n_tokens, int n_heads, int pos0, const RopeParams& p, cudaStream_t stream) {
    const int pairs = n_heads * (p.n_rot / 2);
    if (n_tokens <= 0 || pairs <= 0) return;
    const float theta_scale = std::pow(p.freq_base, -2.0f / (float)p.n_rot);  // the CPU's expression, on the host
    const dim3 grid((pairs + kThreads - 1) / kThreads, n_tokens);
    rope_kernel<<<grid, kThreads, 0, stream>>>(x, n_heads, pos0, p, theta_scale);
    CUDA_CHECK_LAUNCH();
}

void rope(float* x, int n_heads, int pos, const RopeParams& p, cudaStream_t stream) {
    rope_tokens(x, 1, n_heads, pos, p, stream);
}

}  // namespace ember::gpu
