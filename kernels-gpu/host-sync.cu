#include <cuda_fp16.h>

#include <string>

#include "engine/error.h"
#include "kernels-cpu/dtype.h"
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

// dst[i] = value(i) for i < n, written through to (host) memory: each thread loads a batch of its elements (i, i +
// kCopyThreads, ...) before it stores them, so that the loads' latencies overlap.
template <typename T, typename Value>
__device__ __forceinline__ void store_through(T* dst, int64_t n, Value value) {
    for (int64_t base = 0; base < n; base += (int64_t)kCopyThreads * kCopyBatch) {
        T v[kCopyBatch];
#pragma unroll
        for (int k = 0; k < kCopyBatch; k++) {
            const int64_t i = base + threadIdx.x + (int64_t)k * kCopyThreads;
            v[k] = i < n ? value(i) : T(0);
        }
#pragma unroll
        for (int k = 0; k < kCopyBatch; k++) {
            const int64_t i = base + threadIdx.x + (int64_t)k * kCopyThreads;
            if (i < n) __stwt(dst + i, v[k]);
        }
    }
}

__device__ __forceinline__ void copy_through(float* dst, const float* __restrict__ src, int64_t n) {
    store_through(dst, n, [&](int64_t i) { return src[i]; });
}

// The end of a one-block handoff: once every thread's stores are done (the barrier), one thread makes them visible
// to the host and then stores the counter, which the host polls.
__device__ __forceinline__ void signal_host_after_block(volatile uint32_t* counter, uint32_t value) {
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence_system();  // cumulative: the block's stores, seen through the barrier, land first
        *counter = value;
    }
}

__global__ void __launch_bounds__(kCopyThreads)
    copy_signal_kernel(float* dst, const float* __restrict__ src, int64_t n, volatile uint32_t* counter,
                       uint32_t value) {
    wait_for_previous_kernel();
    release_next_kernel();
    copy_through(dst, src, n);
    signal_host_after_block(counter, value);
}

// n / 32 Q8_0 blocks from the device layout (quants qs, scales d) to kernels-cpu's 34-byte blocks at dst, as 17
// 16-bit units a block (the scale's fp16 bits, then the quants in pairs).
__device__ __forceinline__ void q8_blocks_through(unsigned short* dst, const int8_t* __restrict__ qs,
                                                  const float* __restrict__ d, int64_t n) {
    constexpr int kUnits = (int)(sizeof(block_q8_0) / 2);
    const unsigned short* q16 = reinterpret_cast<const unsigned short*>(qs);
    store_through(dst, n / QK8_0 * kUnits, [&](int64_t u) -> unsigned short {
        const int64_t b = u / kUnits, o = u % kUnits;
        return o == 0 ? __half_as_ushort(__float2half_rn(d[b]))  // d holds an fp16 value: exact
                      : q16[b * (QK8_0 / 2) + o - 1];
    });
}

// bits[w] = the ballot of scores[32 w + lane] > threshold, a warp per word, each warp's words batched.
__device__ __forceinline__ void above_bits_through(uint32_t* bits, const float* __restrict__ scores, int64_t n,
                                                   float threshold) {
    constexpr int kWarps = kCopyThreads / 32;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t n_words = (n + 31) / 32;
    for (int64_t base = 0; base < n_words; base += (int64_t)kWarps * kCopyBatch) {
        bool above[kCopyBatch];
#pragma unroll
        for (int k = 0; k < kCopyBatch; k++) {
            const int64_t i = (base + warp + (int64_t)k * kWarps) * 32 + lane;
            above[k] = i < n && scores[i] > threshold;
        }
#pragma unroll
        for (int k = 0; k < kCopyBatch; k++) {
            const int64_t w = base + warp + (int64_t)k * kWarps;
            const unsigned word = __ballot_sync(0xffffffffu, above[k]);
            if (lane == 0 && w < n_words) __stwt(reinterpret_cast<unsigned*>(bits + w), word);
        }
    }
}

__global__ void __launch_bounds__(kCopyThreads)
    split_ffn_handoff_kernel(SplitFfnHandoff h, volatile uint32_t* counter, uint32_t value) {
    wait_for_previous_kernel();
    release_next_kernel();
    if (h.x_q8 != nullptr) {
        const int8_t* qs = static_cast<const int8_t*>(h.x_q8);
        q8_blocks_through(static_cast<unsigned short*>(h.host_x), qs, reinterpret_cast<const float*>(qs + h.n), h.n);
    } else {
        copy_through(static_cast<float*>(h.host_x), h.x, h.n);
    }
    above_bits_through(h.host_bits, h.scores, h.n_scores, h.threshold);
    signal_host_after_block(counter, value);
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

void copy_to_host_and_signal(float* dst, const float* src, int64_t n, volatile uint32_t* counter, uint32_t value,
                             cudaStream_t stream) {
    launch_chained(copy_signal_kernel, dim3(1), dim3(kCopyThreads), 0, stream, dst, src, n, counter, value);
}

void hand_split_ffn_inputs_to_host(const SplitFfnHandoff& h, volatile uint32_t* counter, uint32_t value,
                                   cudaStream_t stream) {
    if (h.x_q8 != nullptr && h.n % QK8_0 != 0)
        throw Error("gpu::hand_split_ffn_inputs_to_host: " + std::to_string(h.n) +
                    " Q8_0 activations, expected a multiple of " + std::to_string(QK8_0));
    launch_chained(split_ffn_handoff_kernel, dim3(1), dim3(kCopyThreads), 0, stream, h, counter, value);
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
