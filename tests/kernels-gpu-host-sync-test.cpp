// Host counters as stream dependencies (kernels-gpu/host-sync.h): work queued after a wait runs only once the host
// has stored the counter, and a signal reaches the host only after the work queued before it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "kernels-gpu/host-sync.h"
#include "tests/kernels-gpu-test-util.h"

namespace ember::gpu_test {
namespace {

struct Pinned {
    explicit Pinned(size_t bytes) { CUDA_CHECK(cudaMallocHost(&p, bytes)); }
    ~Pinned() { cudaFreeHost(p); }
    void* p = nullptr;
};

TEST(HostCounter, ReachedIsWrapSafe) {
    EXPECT_TRUE(gpu::counter_reached(5, 5));
    EXPECT_TRUE(gpu::counter_reached(6, 5));
    EXPECT_FALSE(gpu::counter_reached(4, 5));
    EXPECT_TRUE(gpu::counter_reached(2, 0xFFFFFFFEu));  // past the wrap
    EXPECT_FALSE(gpu::counter_reached(0xFFFFFFFEu, 2));
}

// The stream waits for the host: a copy of a host value queued behind the wait sees the value the host wrote
// before it stored the counter, even though the host wrote it 50 ms after queueing; then the device signals back.
TEST_F(Gpu, StreamWaitsForHostCounterAndSignalsBack) {
    cudaStream_t s;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    Pinned mem(3 * sizeof(uint32_t) + sizeof(float));
    auto* h2d = static_cast<volatile uint32_t*>(mem.p);
    volatile uint32_t* d2h = h2d + 1;
    auto* value = reinterpret_cast<float*>(static_cast<uint32_t*>(mem.p) + 2);
    *h2d = 0xFFFFFFF0u, *d2h = 0, *value = 1.0f;  // counters near the wrap
    DeviceMem dv(std::vector<float>{0.0f}), dout(std::vector<float>{0.0f});

    gpu::wait_host_counter(h2d, 0xFFFFFFF0u + 20, s);  // reached only past the wrap
    CUDA_CHECK(cudaMemcpyAsync(dv.as<float>(), value, sizeof(float), cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(value, dv.as<float>(), sizeof(float), cudaMemcpyDeviceToHost, s));
    gpu::signal_host_counter(d2h, 7, s);

    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady) << "the stream ran past the wait before the host stored";
    EXPECT_EQ(*d2h, 0u);
    *value = 42.0f;
    std::atomic_thread_fence(std::memory_order_release);
    *h2d = 0xFFFFFFF0u + 19;  // one short: still waiting
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady);
    *h2d = 0xFFFFFFF0u + 20;
    const auto t0 = std::chrono::steady_clock::now();
    while (!gpu::counter_reached(*d2h, 7)) {
        ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10)) << "no signal from the device";
    }
    EXPECT_EQ(*value, 42.0f);  // the round trip finished before the signal
    CUDA_CHECK(cudaStreamSynchronize(s));
    EXPECT_EQ(dv.to_host<float>()[0], 42.0f);
    CUDA_CHECK(cudaStreamDestroy(s));
}

}  // namespace
}  // namespace ember::gpu_test
