// Shared pieces of the GPU kernel tests: the skip-without-a-device fixture, plus device buffers and seeded random
// data (tests/kernels-gpu-device.h).
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "kernels-gpu/cuda-check.h"
#include "tests/kernels-gpu-device.h"

namespace ember::gpu_test {

class Gpu : public ::testing::Test {
protected:
    void SetUp() override {
        if (gpu::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine: GPU test skipped";
    }
};

}  // namespace ember::gpu_test
