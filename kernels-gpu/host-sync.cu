#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/host-sync.h"

namespace ember::gpu {

namespace {

// One thread polls the host's counter over the bus; the sleep keeps the polling from flooding it.
__global__ void wait_kernel(const volatile uint32_t* counter, uint32_t target) {
    while ((int32_t)(*counter - target) < 0) __nanosleep(200);
}

__global__ void signal_kernel(volatile uint32_t* counter, uint32_t value) {
    __threadfence_system();
    *counter = value;
}

}  // namespace

void wait_host_counter(const volatile uint32_t* counter, uint32_t target, cudaStream_t stream) {
    wait_kernel<<<1, 1, 0, stream>>>(counter, target);
    CUDA_CHECK_LAUNCH();
}

void signal_host_counter(volatile uint32_t* counter, uint32_t value, cudaStream_t stream) {
    signal_kernel<<<1, 1, 0, stream>>>(counter, value);
    CUDA_CHECK_LAUNCH();
}

}  // namespace ember::gpu
