// One check for every CUDA runtime call and kernel launch: throws ember::Error with file:line and CUDA's message.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "engine/error.h"

namespace ember::gpu {

inline void cuda_check(cudaError_t err, const char* file, int line) {
    if (err != cudaSuccess)
        throw Error(std::string("CUDA error at ") + file + ":" + std::to_string(line) + ": " +
                    cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

// Number of usable CUDA devices; 0 (not an error) where there is no driver or no GPU.
int cuda_device_count();

}  // namespace ember::gpu

#define CUDA_CHECK(call) ::ember::gpu::cuda_check((call), __FILE__, __LINE__)
// After a kernel launch: launch-configuration errors surface here, not at the next sync.
#define CUDA_CHECK_LAUNCH() ::ember::gpu::cuda_check(cudaGetLastError(), __FILE__, __LINE__)
