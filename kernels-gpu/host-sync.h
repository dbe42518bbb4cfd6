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
// Queues a store of value into *counter once the stream's earlier work (copies included) is done.
void signal_host_counter(volatile uint32_t* counter, uint32_t value, cudaStream_t stream);

}  // namespace ember::gpu
