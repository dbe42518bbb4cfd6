#include "engine/memory-bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/error.h"

namespace ember {

namespace {

volatile uint64_t g_sink;  // keeps the reads from being optimised away

// XOR of a slice with 8 independent lanes, so the compiler can keep several loads in flight (and vectorise).
uint64_t read_slice(const uint64_t* p, size_t n) {
    uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] ^= p[i + l];
    for (; i < n; i++) acc[0] ^= p[i];
    uint64_t r = 0;
    for (int l = 0; l < 8; l++) r ^= acc[l];
    return r;
}

// A reusable spin barrier: the timed passes must not include thread start-up or OS wake-up latency.
class SpinBarrier {
public:
    explicit SpinBarrier(int n) : n_(n) {}
    void wait() {
        const int gen = gen_.load(std::memory_order_acquire);
        if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
            count_.store(0, std::memory_order_relaxed);
            gen_.fetch_add(1, std::memory_order_acq_rel);
        } else {
            while (gen_.load(std::memory_order_acquire) == gen) std::this_thread::yield();
        }
    }

private:
    const int n_;
    std::atomic<int> count_{0};
    std::atomic<int> gen_{0};
};

}  // namespace

double memory_bandwidth_probe(size_t bytes, int n_threads, int n_reps) {
    if (bytes < (1u << 20)) throw Error("memory_bandwidth_probe: buffer must be >= 1 MiB, found " + std::to_string(bytes) + " bytes");
    if (n_threads < 1) throw Error("memory_bandwidth_probe: n_threads must be >= 1, found " + std::to_string(n_threads));
    if (n_reps < 1) throw Error("memory_bandwidth_probe: n_reps must be >= 1, found " + std::to_string(n_reps));

    const size_t n = bytes / sizeof(uint64_t);
    std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
    const size_t per_thread = (n + n_threads - 1) / n_threads;
    std::vector<uint64_t> partial(n_threads);
    std::vector<double> seconds(n_reps);
    SpinBarrier barrier(n_threads);
    // Persistent threads: each first writes its own slice (first touch places its pages near it), then all read
    // their slices together n_reps times between barriers; thread 0 times each pass.
    auto body = [&](int t) {
        const size_t b = std::min(n, (size_t)t * per_thread);
        const size_t c = std::min(n, b + per_thread) - b;
        for (size_t i = 0; i < c; i++) buf[b + i] = (b + i) * 0x9E3779B97F4A7C15ull;
        for (int r = 0; r < n_reps; r++) {
            barrier.wait();
            const auto t0 = std::chrono::steady_clock::now();
            partial[t] ^= read_slice(buf.get() + b, c);
            barrier.wait();
            if (t == 0) seconds[r] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
    };
    std::vector<std::thread> workers;
    for (int t = 1; t < n_threads; t++) workers.emplace_back(body, t);
    body(0);
    for (std::thread& w : workers) w.join();
    uint64_t x = 0;
    for (uint64_t p : partial) x ^= p;
    g_sink = x;
    const double best = *std::min_element(seconds.begin(), seconds.end());
    return (double)(n * sizeof(uint64_t)) / best / 1e9;
}

}  // namespace ember
