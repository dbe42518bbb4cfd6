#include "engine/memory-bandwidth.h"

#include <algorithm>
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

template <typename F>
void run_threads(int n_threads, F&& body) {
    std::vector<std::thread> workers;
    for (int t = 1; t < n_threads; t++) workers.emplace_back(body, t);
    body(0);
    for (std::thread& w : workers) w.join();
}

}  // namespace

double memory_bandwidth_probe(size_t bytes, int n_threads, int n_reps) {
    if (bytes < (1u << 20)) throw Error("memory_bandwidth_probe: buffer must be >= 1 MiB, found " + std::to_string(bytes) + " bytes");
    if (n_threads < 1) throw Error("memory_bandwidth_probe: n_threads must be >= 1, found " + std::to_string(n_threads));
    if (n_reps < 1) throw Error("memory_bandwidth_probe: n_reps must be >= 1, found " + std::to_string(n_reps));

    const size_t n = bytes / sizeof(uint64_t);
    std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
    const size_t per_thread = (n + n_threads - 1) / n_threads;
    auto slice = [&](int t, size_t* begin, size_t* count) {
        *begin = std::min(n, (size_t)t * per_thread);
        *count = std::min(n, *begin + per_thread) - *begin;
    };
    // Each thread writes its own slice first, so its pages are local to it (first touch).
    run_threads(n_threads, [&](int t) {
        size_t b, c;
        slice(t, &b, &c);
        for (size_t i = 0; i < c; i++) buf[b + i] = (b + i) * 0x9E3779B97F4A7C15ull;
    });

    double best = 0.0;
    std::vector<uint64_t> partial(n_threads);
    for (int r = 0; r < n_reps; r++) {
        const auto t0 = std::chrono::steady_clock::now();
        run_threads(n_threads, [&](int t) {
            size_t b, c;
            slice(t, &b, &c);
            partial[t] = read_slice(buf.get() + b, c);
        });
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        uint64_t x = 0;
        for (uint64_t p : partial) x ^= p;
        g_sink = x;
        best = std::max(best, (double)(n * sizeof(uint64_t)) / s / 1e9);
    }
    return best;
}

}  // namespace ember
