// thread-pool.h: coverage of [0, n) by disjoint chunks, many tiny calls, uneven work, exceptions, shutdown.
#include <gtest/gtest.h>


#include <algorithm>
#include <atomic>
#include <cstdio>
#include <future>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels-cpu/thread-pool.h"

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace ember {
namespace {

class KernelsThreadPool : public ::testing::TestWithParam<int> {};

TEST_P(KernelsThreadPool, CoversRangeOnceWithGrain) {
    ThreadPool pool(GetParam());
    EXPECT_EQ(pool.size(), GetParam());
    for (int64_t n : {1, 2, 7, 100, 1000, 123457}) {
        for (int64_t grain : {1, 3, 16, 1000}) {
            std::vector<int> hits((size_t)n, 0);  // chunks are disjoint: plain writes do not race
            std::atomic<int64_t> sum{0};
            std::atomic<int> short_chunks{0};
            pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
                ASSERT_LT(b, e);
                if (e - b < grain && e != n) short_chunks++;
                int64_t s = 0;
                for (int64_t i = b; i < e; i++) {
                    hits[i]++;
                    s += i;
                }
                sum += s;
            });
            EXPECT_EQ(sum.load(), n * (n - 1) / 2) << n << " " << grain;
            EXPECT_EQ(short_chunks.load(), 0) << "only the last chunk may be smaller than the grain";
            for (int64_t i = 0; i < n; i++) ASSERT_EQ(hits[i], 1) << i;
        }
    }
    pool.parallel_for(0, 1, [](int64_t, int64_t) { FAIL() << "n = 0 runs nothing"; });
}

TEST_P(KernelsThreadPool, SpreadsOverThreads) {
    const int nt = GetParam();
    ThreadPool pool(nt);
    std::vector<std::thread::id> ids(64);
    std::atomic<int> arrived{0};
    pool.parallel_for(64, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) ids[i] = std::this_thread::get_id();
        // hold the first chunks until every thread has one, so all must take part
        if (arrived.fetch_add(1) < nt) {
            const auto t0 = std::chrono::steady_clock::now();
            while (arrived.load() < nt && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
                std::this_thread::yield();
            }
        }
    });
    std::vector<std::thread::id> distinct;
    for (auto id : ids) {
        if (std::find(distinct.begin(), distinct.end(), id) == distinct.end()) distinct.push_back(id);
    }
    EXPECT_EQ((int)distinct.size(), nt);
}

TEST_P(KernelsThreadPool, ManyTinyCalls) {
    ThreadPool pool(GetParam());
    std::atomic<int64_t> total{0};
    const auto t0 = std::chrono::steady_clock::now();
    // 100k calls; 10k where the pool has more threads than the machine has cores (every call then waits
    // for descheduled workers)
    const int calls = GetParam() <= (int)std::thread::hardware_concurrency() ? 100000 : 10000;
    for (int c = 0; c < calls; c++) {
        pool.parallel_for(GetParam() * 2, 1, [&](int64_t b, int64_t e) { total += e - b; });
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(total.load(), (int64_t)calls * GetParam() * 2);
    // ~1-5 us per call when the cores are free; generous for a loaded shared machine
    EXPECT_LT(s, 30.0);
    std::printf("[          ] %d threads: %d calls in %.3f s (%.2f us/call)\n", GetParam(), calls, s, s / calls * 1e6);
}

// Back-to-back jobs of different sizes: a worker late from one job must never claim units of the next under the
// old job's ticket (that once ran units twice or out of range and left the caller waiting forever).
TEST_P(KernelsThreadPool, BackToBackJobsOfDifferentSizesStayApart) {
    ThreadPool pool(GetParam());
    const int calls = GetParam() <= (int)std::thread::hardware_concurrency() ? 50000 : 5000;
    std::vector<std::atomic<int>> hits(64);
    std::atomic<int64_t> out_of_range{0}, wrong_count{0};
    auto run = [&] {
        for (int c = 0; c < calls; c++) {
            const int64_t n = c % 2 ? 2 : 64;
            for (int64_t i = 0; i < n; i++) hits[(size_t)i].store(0, std::memory_order_relaxed);
            pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
                for (int64_t i = b; i < e; i++) {
                    if (i < 0 || i >= n) out_of_range++;
                    else hits[(size_t)i]++;
                }
            });
            for (int64_t i = 0; i < n; i++) wrong_count += hits[(size_t)i].load() != 1;
        }
    };
    // A hang is the failure this test exists for: give up after 120 s instead of waiting for ctest's timeout.
    auto done = std::async(std::launch::async, run);
    if (done.wait_for(std::chrono::seconds(120)) != std::future_status::ready) {
        std::fprintf(stderr, "BackToBackJobsOfDifferentSizesStayApart: parallel_for hung with %d threads\n", GetParam());
        std::_Exit(1);
    }
    done.get();
    EXPECT_EQ(out_of_range.load(), 0);
    EXPECT_EQ(wrong_count.load(), 0);
}

TEST_P(KernelsThreadPool, UnevenWork) {
    ThreadPool pool(GetParam());
    const int64_t n = 200;
    std::vector<double> out((size_t)n, 0.0);
    pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) {
            double s = 0.0;
            const int64_t work = i % 10 == 0 ? 200000 : 100;  // a few chunks ~1000x heavier
            for (int64_t k = 0; k < work; k++) s += 1.0 / (double)(k + i + 1);
            out[i] = s;
        }
    });
    for (int64_t i = 0; i < n; i++) ASSERT_GT(out[i], 0.0);
}

TEST_P(KernelsThreadPool, ExceptionPropagates) {
    ThreadPool pool(GetParam());
    for (int round = 0; round < 3; round++) {
        std::atomic<int> ran{0};
        try {
            pool.parallel_for(1000, 10, [&](int64_t b, int64_t e) {
                ran++;
                if (b <= 500 && 500 < e) throw std::runtime_error("chunk with 500 failed");
            });
            FAIL() << "no exception";
        } catch (const std::runtime_error& e) {
            EXPECT_STREQ(e.what(), "chunk with 500 failed");
        }
        EXPECT_GE(ran.load(), 1);
        // the pool is still usable afterwards
        std::atomic<int64_t> sum{0};
        pool.parallel_for(1000, 10, [&](int64_t b, int64_t e) { sum += e - b; });
        EXPECT_EQ(sum.load(), 1000);
    }
}

TEST_P(KernelsThreadPool, NestedCallThrows) {
    ThreadPool pool(GetParam());
    EXPECT_THROW(pool.parallel_for(100, 1, [&](int64_t, int64_t) { pool.parallel_for(10, 1, [](int64_t, int64_t) {}); }),
                 std::logic_error);
    std::atomic<int64_t> sum{0};
    pool.parallel_for(100, 1, [&](int64_t b, int64_t e) { sum += e - b; });
    EXPECT_EQ(sum.load(), 100);
}

TEST_P(KernelsThreadPool, DestroyWhileIdle) {
    { ThreadPool pool(GetParam()); }  // never used
    {
        ThreadPool pool(GetParam());
        pool.parallel_for(100, 1, [](int64_t, int64_t) {});
    }  // workers still spinning
    {
        ThreadPool pool(GetParam());
        pool.parallel_for(100, 1, [](int64_t, int64_t) {});
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // workers asleep
        std::atomic<int64_t> sum{0};
        pool.parallel_for(100, 1, [&](int64_t b, int64_t e) { sum += e - b; });  // woken from sleep
        EXPECT_EQ(sum.load(), 100);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

INSTANTIATE_TEST_SUITE_P(Threads, KernelsThreadPool, ::testing::Values(1, 2, 3, 4, 8));

TEST(KernelsThreadPoolApi, RejectsZeroThreads) {
    EXPECT_THROW(ThreadPool(0), std::invalid_argument);
    EXPECT_THROW(ThreadPool(-2), std::invalid_argument);
}

#if defined(__linux__)
// The CPUs a thread may run on.
std::vector<int> affinity_of_this_thread() {
    cpu_set_t set;
    CPU_ZERO(&set);
    EXPECT_EQ(pthread_getaffinity_np(pthread_self(), sizeof set, &set), 0);
    std::vector<int> cpus;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set)) cpus.push_back(c);
    return cpus;
}

// Pinned workers: each worker that runs a chunk may run only on its CPU of the list (worker t on pin[t]); workers
// past the list are not pinned; the calling thread keeps the affinity it had.
TEST(KernelsThreadPoolApi, PinnedWorkersRunOnTheirOwnCpu) {
    const std::vector<int> mine = affinity_of_this_thread();
    ASSERT_FALSE(mine.empty());
    const std::vector<int> pin = {mine.front(), mine.back()};  // CPUs this process may use (one CPU: twice the same)
    ThreadPool pool(4, pin);  // workers 1 (on pin[1]), 2 and 3 (unpinned)
    std::mutex mu;
    std::vector<std::pair<std::thread::id, std::vector<int>>> seen;
    pool.parallel_for(48, 1, [&](int64_t, int64_t) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // long enough for the workers to join in
        std::lock_guard<std::mutex> lock(mu);
        seen.emplace_back(std::this_thread::get_id(), affinity_of_this_thread());
    });
    int worker_chunks = 0, pinned_chunks = 0;
    for (const auto& [id, cpus] : seen) {
        if (id == std::this_thread::get_id()) {
            EXPECT_EQ(cpus, mine) << "the caller's affinity changed";
            continue;
        }
        worker_chunks++;
        if (cpus.size() == 1 && mine.size() > 1) {
            EXPECT_EQ(cpus[0], pin[1]) << "a worker pinned to CPU " << cpus[0];
            pinned_chunks++;
        } else {
            EXPECT_EQ(cpus, mine) << "an unpinned worker with another mask";
        }
    }
    EXPECT_GT(worker_chunks, 0) << "no worker ran a chunk";
    if (mine.size() > 1) {
        EXPECT_GT(pinned_chunks, 0) << "the pinned worker ran no chunk";
    }
    EXPECT_EQ(affinity_of_this_thread(), mine);
}
#endif

}  // namespace
}  // namespace ember
