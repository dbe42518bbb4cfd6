// Chained kernel launches (programmatic dependent launch, compute capability 9.0 and later).
//
// A kernel launched with launch_chained may be scheduled while the kernel before it in the stream is still running:
// its blocks become resident as soon as every block of the previous kernel has called release_next_kernel() (or
// exited), and they then wait in wait_for_previous_kernel() until that kernel has finished and its writes are
// visible. What this hides is the launch and block dispatch between two dependent kernels, a few microseconds each,
// which add up over the dozens of small kernels of a decode step (also inside a CUDA graph, which keeps the edges).
//
// Rules for a kernel launched this way:
//   - wait_for_previous_kernel() is its first statement: nothing in global memory is read or written before it, so
//     neither the previous kernel's outputs nor its inputs can be touched early;
//   - release_next_kernel() comes right after it, so at most one kernel waits ahead of the running one.
// On devices before 9.0, and for code compiled for an older virtual architecture, the launch is an ordinary one and
// both calls compile to nothing.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "kernels-gpu/cuda-check.h"

namespace ember::gpu {

__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void release_next_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether launches on the current device can be chained: compute capability 9.0 or later. Cached per device.
bool chained_launches_supported();

// SMs of the current device. Cached per device.
int device_sm_count();

// Whether p is 16-byte aligned, as the kernels that load 16 bytes at a time (float4, uint4, cp.async) need their
// pointers to be; the launchers check it to choose between such a kernel and a plainer one.
__host__ __device__ inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether the kernel's loaded image holds the waits: its code was compiled for virtual architecture 9.0 or later
// (a build whose architecture list stops below 90 runs on a newer card from older PTX, without them). Cached per
// kernel.
bool kernel_waits_for_previous(const void* kernel);

// Whether this library's kernels are launched chained on the current device (both of the above).
bool chained_launches_active();

// kernel<<<grid, block, smem, stream>>>(args...), chained to the previous kernel where the device and the kernel's
// image support it; the launch is checked (CUDA_CHECK).
template <typename... Params, typename... Args>
void launch_chained(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                    Args&&... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1] = {};
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    if (chained_launches_supported() && kernel_waits_for_previous(reinterpret_cast<const void*>(kernel))) {
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace ember::gpu
