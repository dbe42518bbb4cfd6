#include "kernels-gpu/cuda-check.h"

namespace ember::gpu {

int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device" error
        return 0;
    }
    return n;
}

}  // namespace ember::gpu
