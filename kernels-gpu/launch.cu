#include <atomic>
#include <mutex>
#include <unordered_map>

#include "kernels-gpu/launch.cuh"

namespace ember::gpu {

namespace {

// Built like every kernel of this library: whether its image holds the waits tells whether theirs do.
__global__ void probe_kernel() { wait_for_previous_kernel(); }

constexpr int kMaxDevices = 64;  // devices whose attributes are kept

// Attribute A of device dev (0 <= dev < kMaxDevices), asked of the driver once. The attributes kept are positive, so
// 0 marks one not asked yet.
template <cudaDeviceAttr A>
int kept_attribute(int dev) {
    static std::atomic<int> known[kMaxDevices];
    int v = known[dev].load(std::memory_order_relaxed);
    if (v == 0) {
        CUDA_CHECK(cudaDeviceGetAttribute(&v, A, dev));
        known[dev].store(v, std::memory_order_relaxed);
    }
    return v;
}

}  // namespace

bool chained_launches_supported() {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    if (dev < 0 || dev >= kMaxDevices) return false;
    return kept_attribute<cudaDevAttrComputeCapabilityMajor>(dev) >= 9;
}

int device_sm_count() {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    if (dev >= 0 && dev < kMaxDevices) return kept_attribute<cudaDevAttrMultiProcessorCount>(dev);
    int n = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
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
