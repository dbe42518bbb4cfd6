// Handoffs between the host and a stream through counters in pinned host memory, so that a stream can be queued
// ahead of the host work it depends on: the stream waits on the device for a value the host writes, and tells the
// host that its earlier work is done by writing one. Counters only grow (modulo 2^32); "reached" compares wrap-safe.
// Pointers are pinned host memory (cudaMallocHost), which the device reads and writes through unified addressing.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ember::gpu {

// Whether counter value c has reached target, across the 2^32 wrap.
inline bool counter_reached(uint32_t c, uint32_t target) { return (int32_t)(c - target) >= 0; }

// Queues a wait: the stream's later work starts once *counter has reached target (the host stores it).
void wait_host_counter(const volatile uint32_t* counter, uint32_t target, cudaStream_t stream);
// One kernel instead of a copy and a signal: dst[0, n) = src (device floats to pinned host memory, written
// through), then *counter = value once every float has landed.
void copy_to_host_and_signal(float* dst, const float* src, int64_t n, volatile uint32_t* counter, uint32_t value,
                             cudaStream_t stream);
// A split FFN layer's inputs for the host part, in one kernel, then *counter = value once every byte has landed:
//   - the FFN input as kernels-cpu's dot products take it: x's n floats when x_q8 is null, else, from x_q8 (n
//     activations in the device's Q8_0 layout, dot.h), n / 32 blocks of kernels-cpu's block_q8_0 (fp16 scale, 32
//     quants): the bytes kernels-cpu's dot_prepare_vec makes from the same floats;
//   - which of scores[0, n_scores) are above threshold: bit i % 32 of bits[i / 32], ceil(n_scores / 32) words (the
//     comparison predictor_active makes; NaN is not above).
// Destinations are pinned host memory; host_x at least 2-byte aligned. Throws ember::Error naming the function when
// x_q8 is given and n is not a multiple of 32.
struct SplitFfnHandoff {
    void* host_x = nullptr;
    const float* x = nullptr;
    const void* x_q8 = nullptr;
    int64_t n = 0;
    uint32_t* host_bits = nullptr;
    const float* scores = nullptr;
    int64_t n_scores = 0;
    float threshold = 0.0f;
};
void hand_split_ffn_inputs_to_host(const SplitFfnHandoff& h, volatile uint32_t* counter, uint32_t value,
                                   cudaStream_t stream);
// x[i] += y[i] + z[i] (summed as (x + y) + z), or x[i] += z[i] when y is null, for i in [0, n); x and y
// on the device, z in pinned host memory read over the bus at the time the kernel runs (after a wait_host_counter:
// the host's latest values, with no copy queued in between).
void add_from_host(float* x, const float* y, const float* z_host, int64_t n, cudaStream_t stream);

}  // namespace ember::gpu
