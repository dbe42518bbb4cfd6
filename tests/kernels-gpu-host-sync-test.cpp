// Host counters as stream dependencies (kernels-gpu/host-sync.h): work queued after a wait runs only once the host
// has stored the counter, and a signal reaches the host only after the work queued before it.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include "engine/error.h"
#include "kernels-cpu/dot.h"
#include "kernels-gpu/dot.h"
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
    gpu::copy_to_host_and_signal(value, dv.as<float>(), 1, d2h, 7, s);

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

// The copy lands before the counter: when the host sees the value, the range holds the device's floats, and
// nothing past it is written (odd lengths, more floats than the block has threads, and none).
TEST_F(Gpu, CopyToHostAndSignalLandsBeforeTheCounter) {
    const int64_t n_max = 20011;
    const std::vector<float> a = randn(n_max, 1.0f, 61);
    DeviceMem da(a);
    Pinned mem((n_max + 1) * sizeof(float) + 64);
    auto* ha = static_cast<float*>(mem.p);
    auto* counter = reinterpret_cast<volatile uint32_t*>(ha + n_max + 1);
    const int64_t lengths[] = {8191, 0, n_max};
    for (int round = 1; round <= 3; round++) {
        const int64_t n = lengths[round - 1];
        std::fill(ha, ha + n_max, -1.0f);
        gpu::copy_to_host_and_signal(ha, da.as<float>(), n, counter, (uint32_t)round, nullptr);
        const auto t0 = std::chrono::steady_clock::now();
        while (!gpu::counter_reached(*counter, (uint32_t)round))
            ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10)) << "no signal";
        std::atomic_thread_fence(std::memory_order_acquire);
        for (int64_t i = 0; i < n_max; i++)
            ASSERT_EQ(ha[i], i < n ? a[i] : -1.0f) << "round " << round << " [" << i << "]";
        CUDA_CHECK(cudaDeviceSynchronize());
    }
}

// The split FFN's handoff: the FFN input in kernels-cpu's Q8_0 blocks is byte for byte what the CPU's
// dot_prepare_vec makes of the same floats (or the floats themselves), and the bits are the comparisons
// predictor_active makes (strictly above; NaN and ties not), exactly ceil(n / 32) words of them, all landed when the
// counter is.
TEST_F(Gpu, SplitFfnHandoffGivesTheHostsDotInputAndTheComparisons) {
    const int64_t n = 4128, n_scores = 14113;  // 129 Q8_0 blocks; scores end mid-word
    std::vector<float> x = randn(n, 2.0f, 81);
    x[5] = 0.0f;
    std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // a block of zeros: scale 0
    x[200] = 127.0f, x[201] = 63.5f;                   // a tie at .5 for round half away
    std::vector<float> scores = randn(n_scores, 1.0f, 82);
    const float thr = 0.75f;
    scores[3] = thr, scores[40] = NAN, scores[41] = std::nextafter(thr, 1.0f);
    DeviceMem dx(x), dscores(scores);
    DeviceMem dxq(std::vector<uint8_t>(gpu::dot_vec_bytes(DType::DTYPE_Q4_0, n), 0));
    gpu::dot_prepare_vec(DType::DTYPE_Q4_0, dx.as<float>(), dxq.as<uint8_t>(), n, nullptr);
    std::vector<uint8_t> want_q8(dot_vec_bytes(DType::DTYPE_Q4_0, n));
    dot_prepare_vec(DType::DTYPE_Q4_0, x.data(), want_q8.data(), n);

    const int64_t n_words = (n_scores + 31) / 32;
    Pinned mem(n * sizeof(float) + (n_words + 1) * sizeof(uint32_t) + 64);
    auto* hx = static_cast<uint8_t*>(mem.p);
    auto* bits = reinterpret_cast<uint32_t*>(hx + n * sizeof(float));
    auto* counter = reinterpret_cast<volatile uint32_t*>(bits + n_words + 1);
    *counter = 0;
    for (uint32_t round = 1; round <= 2; round++) {
        const bool q8 = round == 1;
        std::fill(hx, hx + n * sizeof(float), (uint8_t)0xAB);
        std::fill(bits, bits + n_words + 1, 0xDEADBEEFu);
        gpu::SplitFfnHandoff h;
        h.host_x = hx;
        h.x = dx.as<float>();
        h.x_q8 = q8 ? dxq.as<uint8_t>() : nullptr;
        h.n = n;
        h.host_bits = bits;
        h.scores = dscores.as<float>();
        h.n_scores = n_scores;
        h.threshold = thr;
        gpu::hand_split_ffn_inputs_to_host(h, counter, round, nullptr);
        const auto t0 = std::chrono::steady_clock::now();
        while (!gpu::counter_reached(*counter, round))
            ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10)) << "no signal";
        std::atomic_thread_fence(std::memory_order_acquire);
        if (q8) {
            for (size_t i = 0; i < want_q8.size(); i++) ASSERT_EQ(hx[i], want_q8[i]) << "Q8_0 byte " << i;
            EXPECT_EQ(hx[want_q8.size()], 0xAB) << "written past the blocks";
        } else {
            const auto* hf = reinterpret_cast<const float*>(hx);
            for (int64_t i = 0; i < n; i++) ASSERT_EQ(hf[i], x[i]) << "x[" << i << "]";
        }
        for (int64_t i = 0; i < n_scores; i++)
            ASSERT_EQ((bits[i / 32] >> (i % 32)) & 1u, scores[i] > thr ? 1u : 0u) << "round " << round << " bit " << i;
        EXPECT_EQ(bits[n_words - 1] >> (n_scores % 32), 0u) << "bits past the scores";
        EXPECT_EQ(bits[n_words], 0xDEADBEEFu) << "written past the last word";
        CUDA_CHECK(cudaDeviceSynchronize());
    }
    gpu::SplitFfnHandoff bad;
    bad.host_x = hx;
    bad.x_q8 = dxq.as<uint8_t>();
    bad.n = 100;
    EXPECT_THROW(gpu::hand_split_ffn_inputs_to_host(bad, counter, 9, nullptr), Error);
}

// x += y + z with z read from pinned host memory when the kernel runs: the host's values stored after queueing
// (behind a wait) are the ones added, on every round; bits as (x + y) + z, or x + z, give them.
TEST_F(Gpu, AddFromHostReadsTheHostsLatestValues) {
    const int64_t n = 4099;
    const std::vector<float> x = randn(n, 1.0f, 63), y = randn(n, 1.0f, 64);
    DeviceMem dx(x), dy(y);
    Pinned mem(n * sizeof(float) + 64);
    auto* z = static_cast<float*>(mem.p);
    auto* counter = reinterpret_cast<volatile uint32_t*>(z + n);
    *counter = 0;
    std::vector<float> want = x;
    cudaStream_t s;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    for (uint32_t round = 1; round <= 3; round++) {
        const bool with_y = round != 2;
        gpu::wait_host_counter(counter, round, s);
        gpu::add_from_host(dx.as<float>(), with_y ? dy.as<float>() : nullptr, z, n, s);
        const std::vector<float> zr = randn(n, 1.0f, 70 + round);
        std::copy(zr.begin(), zr.end(), z);
        std::atomic_thread_fence(std::memory_order_release);
        *counter = round;
        CUDA_CHECK(cudaStreamSynchronize(s));
        for (int64_t i = 0; i < n; i++) want[i] = with_y ? (want[i] + y[i]) + zr[i] : want[i] + zr[i];
        const auto got = dx.to_host<float>();
        for (int64_t i = 0; i < n; i++) ASSERT_EQ(got[i], want[i]) << "round " << round << " i=" << i;
    }
    CUDA_CHECK(cudaStreamDestroy(s));
}

}  // namespace
}  // namespace ember::gpu_test
