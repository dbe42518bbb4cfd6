#include <atomic>
#include <mutex>
#include <unordered_map>

#include "kernels-gpu/launch.cuh"

namespace ember::gpu {

namespace {

// Built like every kernel of this library: whether its image holds the waits tells whether theirs do.
__global__ void probe_kernel() { wait_for_previous_kernel(); }

}  // namespace

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

bool kernel_waits_for_previous(const void* kernel) {
    static std::mutex mutex;
    static std::unordered_map<const void*, bool> known;
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = known.find(kernel);
    if (it != known.end()) return it->second;
    cudaFuncAttributes a = {};
    CUDA_CHECK(cudaFuncGetAttributes(&a, kernel));
    return known[kernel] = a.ptxVersion >= 90;
}

bool chained_launches_active() {
    return chained_launches_supported() && kernel_waits_for_previous(reinterpret_cast<const void*>(probe_kernel));
}

}  // namespace ember::gpu
