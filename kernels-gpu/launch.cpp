#include <atomic>

#include "kernels-gpu/launch.cuh"

namespace ember::gpu {

bool chained_launches_supported() {
    constexpr int kMaxDevices = 64;
    static std::atomic<int> known[kMaxDevices];  // 0 not asked yet, 1 no, 2 yes
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    if (dev < 0 || dev >= kMaxDevices) return false;
    int v = known[dev].load(std::memory_order_relaxed);
    if (v == 0) {
        int major = 0;
        CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
        v = major >= 9 ? 2 : 1;
        known[dev].store(v, std::memory_order_relaxed);
    }
    return v == 2;
}

}  // namespace ember::gpu
