// Device buffers and seeded host data for the GPU kernel tests and ember-gpu-bench (no GoogleTest: the benchmark
// includes it too).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels-cpu/dot.h"
#include "kernels-cpu/quant.h"
#include "kernels-gpu/cuda-check.h"

namespace ember::gpu_test {

// Device allocation, optionally filled from a host vector; freed on scope exit.
class DeviceMem {
public:
    explicit DeviceMem(size_t bytes) : bytes_(bytes) { CUDA_CHECK(cudaMalloc(&ptr_, bytes ? bytes : 1)); }
    template <typename T>
    explicit DeviceMem(const std::vector<T>& h) : DeviceMem(h.size() * sizeof(T)) {
        CUDA_CHECK(cudaMemcpy(ptr_, h.data(), bytes_, cudaMemcpyHostToDevice));
    }
    ~DeviceMem() { cudaFree(ptr_); }
    DeviceMem(const DeviceMem&) = delete;
    DeviceMem& operator=(const DeviceMem&) = delete;

    template <typename T = void>
    T* as() const {
        return static_cast<T*>(ptr_);
    }
    size_t bytes() const { return bytes_; }
    // Synchronises the device first, so kernel errors surface here.
    template <typename T>
    std::vector<T> to_host() const {
        CUDA_CHECK(cudaDeviceSynchronize());
        std::vector<T> h(bytes_ / sizeof(T));
        CUDA_CHECK(cudaMemcpy(h.data(), ptr_, h.size() * sizeof(T), cudaMemcpyDeviceToHost));
        return h;
    }
    template <typename T>
    void fill_from(const std::vector<T>& h) {
        CUDA_CHECK(cudaMemcpy(ptr_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    }

private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

inline std::vector<float> randn(size_t n, float scale, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& f : v) f = d(rng);
    return v;
}

// rows x cols floats -> rows rows of type t, and back.
inline std::vector<uint8_t> quantize_matrix(DType t, const std::vector<float>& m, int64_t rows, int64_t cols) {
    const size_t rb = dtype_row_bytes(t, cols);
    std::vector<uint8_t> out(rb * rows);
    for (int64_t r = 0; r < rows; r++) quantize_row(t, m.data() + r * cols, out.data() + r * rb, cols);
    return out;
}
inline std::vector<float> dequantize_matrix(DType t, const std::vector<uint8_t>& m, int64_t rows, int64_t cols) {
    const size_t rb = dtype_row_bytes(t, cols);
    std::vector<float> out((size_t)rows * cols);
    for (int64_t r = 0; r < rows; r++) dequantize_row(t, m.data() + r * rb, out.data() + r * cols, cols);
    return out;
}

// x prepared on the host for type t's dot products (dot_prepare_vec), and the activations those products see.
struct PreparedVec {
    std::vector<uint8_t> xq;
    std::vector<float> seen;
};
inline PreparedVec prepare_vec_host(DType t, const std::vector<float>& x) {
    const int64_t n = (int64_t)x.size();
    PreparedVec p{std::vector<uint8_t>(dot_vec_bytes(t, n)), std::vector<float>(n)};
    dot_prepare_vec(t, x.data(), p.xq.data(), n);
    dequantize_row(dot_vec_type(t), p.xq.data(), p.seen.data(), n);
    return p;
}

constexpr DType kAllTypes[] = {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_BF16, DType::DTYPE_Q8_0,
                               DType::DTYPE_Q4_0};

}  // namespace ember::gpu_test
