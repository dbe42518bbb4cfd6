#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/host-sync.h"
#include "kernels-gpu/launch.cuh"

namespace ember::gpu {

namespace {

// One thread polls the host's counter over the bus; the sleep keeps the polling from flooding it.
__global__ void wait_kernel(const volatile uint32_t* counter, uint32_t target) {
    wait_for_previous_kernel();
    release_next_kernel();
    while ((int32_t)(*counter - target) < 0) __nanosleep(200);
    __threadfence_system();  // the host's data, stored before the counter, is read after it
}

constexpr int kCopyThreads = 1024;  // one block: its barrier orders every copied float before the counter store
constexpr int kCopyBatch = 8;       // loads a thread issues before its stores: one memory latency per batch

// dst[i] = src[i] for i < n, written through to (host) memory: each thread loads a batch of its floats (i, i +
// kCopyThreads, ...) before it stores them, so that the loads' latencies overlap.
__device__ __forceinline__ void copy_through(float* dst, const float* __restrict__ src, int64_t n) {
    for (int64_t base = 0; base < n; base += (int64_t)kCopyThreads * kCopyBatch) {
        float v[kCopyBatch];
#pragma unroll
        for (int k = 0; k < kCopyBatch; k++) {
            const int64_t i = base + threadIdx.x + (int64_t)k * kCopyThreads;
            v[k] = i < n ? src[i] : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < kCopyBatch; k++) {
            const int64_t i = base + threadIdx.x + (int64_t)k * kCopyThreads;
            if (i < n) __stwt(dst + i, v[k]);
        }
    }
}

__global__ void __launch_bounds__(kCopyThreads)
    copy_signal_kernel(float* dst_a, const float* __restrict__ src_a, int64_t n_a, float* dst_b,
                       const float* __restrict__ src_b, int64_t n_b, volatile uint32_t* counter, uint32_t value) {
    wait_for_previous_kernel();
    release_next_kernel();
    copy_through(dst_a, src_a, n_a);
    copy_through(dst_b, src_b, n_b);
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence_system();  // cumulative: the block's stores, seen through the barrier, land first
        *counter = value;
    }
}

constexpr int kAddThreads = 256;

__global__ void add_from_host_kernel(float* __restrict__ x, const float* __restrict__ y, const float* z, int64_t n) {
    wait_for_previous_kernel();
    release_next_kernel();
    const int64_t i = (int64_t)blockIdx.x * kAddThreads + threadIdx.x;
    if (i >= n) return;
    const float zi = __ldcv(z + i);  // never a cached copy of an earlier step's values
    x[i] = y ? (x[i] + y[i]) + zi : x[i] + zi;
}

}  // namespace

void copy_to_host_and_signal(float* dst_a, const float* src_a, int64_t n_a, float* dst_b, const float* src_b,
                             int64_t n_b, volatile uint32_t* counter, uint32_t value, cudaStream_t stream) {
    launch_chained(copy_signal_kernel, dim3(1), dim3(kCopyThreads), 0, stream, dst_a, src_a, n_a, dst_b, src_b, n_b,
                   counter, value);
}

void add_from_host(float* x, const float* y, const float* z_host, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    launch_chained(add_from_host_kernel, dim3((unsigned)((n + kAddThreads - 1) / kAddThreads)), dim3(kAddThreads), 0,
                   stream, x, y, z_host, n);
}

void wait_host_counter(const volatile uint32_t* counter, uint32_t target, cudaStream_t stream) {
    launch_chained(wait_kernel, dim3(1), dim3(1), 0, stream, counter, target);
}


}  // namespace ember::gpu
