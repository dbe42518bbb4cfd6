#include <cuda_fp16.h>

#include <string>

#include "engine/error.h"
#include "kernels-cpu/dot.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/launch.cuh"
#include "kernels-gpu/quantize-device.cuh"

namespace ember::gpu {

namespace {

constexpr int kThreads = 128;

// One warp per 32-element block (quantize_q8_block_warp); with Relu, of max(x, 0) (the predictor's hidden layer).
template <bool Relu>
__global__ void quantize_q8_kernel(const float* __restrict__ x, int8_t* __restrict__ qs, float* __restrict__ d_out,
                                   int64_t n_blocks) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (b >= n_blocks) return;  // uniform per warp
    float v = x[b * QK8_0 + lane];
    if constexpr (Relu) v = v > 0.0f ? v : 0.0f;
    quantize_q8_block_warp(v, lane, qs + b * QK8_0, d_out + b);
}

// y = max(x, 0): the ReLU'd copy that F32 dot products read.
__global__ void relu_copy_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void check_quant_length(DType weight_type, int64_t n) {
    if (n % QK8_0 != 0)
        throw Error(std::string("gpu::dot_prepare_vec: ") + std::to_string(n) + " activations for " +
                    dtype_name(weight_type) + " weights, expected a multiple of " + std::to_string(QK8_0));
}

template <bool Relu>
void prepare(DType weight_type, const float* x, void* xq, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    if (dot_vec_type(weight_type) == DType::DTYPE_F32) {
        if constexpr (Relu)
            launch_chained(relu_copy_kernel, dim3((unsigned)((n + kThreads - 1) / kThreads)), dim3(kThreads), 0,
                           stream, x, static_cast<float*>(xq), n);
        else
            CUDA_CHECK(cudaMemcpyAsync(xq, x, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, stream));
        return;
    }
    check_quant_length(weight_type, n);
    const int64_t n_blocks = n / QK8_0;
    const Q8Parts q = q8_parts(xq, n, "gpu::dot_prepare_vec");
    const int64_t grid = (n_blocks * 32 + kThreads - 1) / kThreads;
    launch_chained(quantize_q8_kernel<Relu>, dim3((unsigned)grid), dim3(kThreads), 0, stream, x, q.qs, q.d, n_blocks);
}

}  // namespace

size_t dot_vec_bytes(DType weight_type, int64_t n) {
    if (dot_vec_type(weight_type) == DType::DTYPE_F32) return (size_t)n * sizeof(float);
    check_quant_length(weight_type, n);
    return (size_t)n + (size_t)(n / QK8_0) * sizeof(float);
}

Q8Parts q8_parts(void* xq, int64_t n, const char* fn) {
    if (xq == nullptr) return {};
    if (n % QK8_0 != 0)
        throw Error(std::string(fn) + ": Q8_0 output of " + std::to_string(n) + " floats, expected a multiple of " +
                    std::to_string(QK8_0));
    auto* qs = static_cast<int8_t*>(xq);
    return {qs, reinterpret_cast<float*>(qs + n)};
}

void dot_prepare_vec(DType weight_type, const float* x, void* xq, int64_t n, cudaStream_t stream) {
    prepare<false>(weight_type, x, xq, n, stream);
}

void dot_prepare_relu_vec(DType weight_type, const float* x, void* xq, int64_t n, cudaStream_t stream) {
    prepare<true>(weight_type, x, xq, n, stream);
}

}  // namespace ember::gpu
