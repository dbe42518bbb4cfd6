#include <cuda_fp16.h>

#include <string>

#include "engine/error.h"
#include "kernels-cpu/dot.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/launch.cuh"

namespace ember::gpu {

namespace {

constexpr int kThreads = 128;

// One warp per 32-element block, as quantize_row's Q8_0: the same float operations, so the same quants and scale.
__global__ void quantize_q8_kernel(const float* __restrict__ x, int8_t* __restrict__ qs, float* __restrict__ d_out,
                                   int64_t n_blocks) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (b >= n_blocks) return;  // uniform per warp
    const float v = x[b * QK8_0 + lane];
    float amax = fabsf(v);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    qs[b * QK8_0 + lane] = (int8_t)roundf(v * id);
    if (lane == 0) d_out[b] = __half2float(__float2half_rn(d));
}

void check_quant_length(DType weight_type, int64_t n) {
    if (n % QK8_0 != 0)
        throw Error(std::string("gpu::dot_prepare_vec: ") + std::to_string(n) + " activations for " +
                    dtype_name(weight_type) + " weights, expected a multiple of " + std::to_string(QK8_0));
}

}  // namespace

size_t dot_vec_bytes(DType weight_type, int64_t n) {
    if (dot_vec_type(weight_type) == DType::DTYPE_F32) return (size_t)n * sizeof(float);
    check_quant_length(weight_type, n);
    return (size_t)n + (size_t)(n / QK8_0) * sizeof(float);
}

void dot_prepare_vec(DType weight_type, const float* x, void* xq, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    if (dot_vec_type(weight_type) == DType::DTYPE_F32) {
        CUDA_CHECK(cudaMemcpyAsync(xq, x, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, stream));
        return;
    }
    check_quant_length(weight_type, n);
    const int64_t n_blocks = n / QK8_0;
    auto* qs = static_cast<int8_t*>(xq);
    auto* d = reinterpret_cast<float*>(qs + n);
    const int64_t grid = (n_blocks * 32 + kThreads - 1) / kThreads;
    launch_chained(quantize_q8_kernel, dim3((unsigned)grid), dim3(kThreads), 0, stream, x, qs, d, n_blocks);
}

}  // namespace ember::gpu
