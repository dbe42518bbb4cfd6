// CUDA kernels against their kernels-cpu references on seeded random inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels-cpu/norm.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/norm.h"

namespace {

class Gpu : public ::testing::Test {
protected:
    void SetUp() override {
        if (ember::gpu::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine: GPU test skipped";
    }
};

// Device buffer holding a copy of a host vector.
struct DeviceVec {
    float* ptr = nullptr;
    size_t n = 0;
    explicit DeviceVec(const std::vector<float>& h) : n(h.size()) {
        CUDA_CHECK(cudaMalloc(&ptr, n * sizeof(float)));
        CUDA_CHECK(cudaMemcpy(ptr, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    }
    std::vector<float> to_host() const {
        std::vector<float> h(n);
        CUDA_CHECK(cudaMemcpy(h.data(), ptr, n * sizeof(float), cudaMemcpyDeviceToHost));
        return h;
    }
    ~DeviceVec() { cudaFree(ptr); }
};

TEST_F(Gpu, RmsNormMatchesCpu) {
    std::mt19937 rng(7);
    std::normal_distribution<float> d(0.0f, 2.0f);
    for (int n : {1, 33, 4096, 5120}) {
        const int rows = 3;
        std::vector<float> x((size_t)rows * n), w(n);
        for (float& v : x) v = d(rng);
        for (float& v : w) v = d(rng);
        DeviceVec dx(x), dw(w), dout(std::vector<float>(x.size(), 0.0f));
        ember::gpu::rmsnorm(dout.ptr, dx.ptr, dw.ptr, n, 1e-5f, rows, nullptr);
        CUDA_CHECK(cudaDeviceSynchronize());
        const auto got = dout.to_host();
        std::vector<float> want(n);
        for (int r = 0; r < rows; r++) {
            ember::rmsnorm(want.data(), x.data() + (size_t)r * n, w.data(), n, 1e-5f);
            for (int i = 0; i < n; i++)
                ASSERT_NEAR(got[(size_t)r * n + i], want[i], 1e-4 * (1 + std::fabs(want[i]))) << "n=" << n;
        }
    }
}

}  // namespace
