// ember-pool-bench: what one ThreadPool::parallel_for costs beyond its work, as a decode step meets it. A split
// layer's host part is two or three calls of a few tens of microseconds each, after an idle gap while the GPU runs
// attention and the predictor; the pool's fixed costs (publishing the job, the workers noticing it, claiming units,
// the caller waiting for the last one) are paid per call. For each gap before the call (the caller spins that long
// with the workers idle) and each job (units of a given length of busy work on every thread), prints the call's time
// minus the job's ideal time (its busy work spread evenly over the threads), best and median over the iterations,
// and how many threads ran none of the call's units, on average (a worker that missed the job, asleep or not
// scheduled, leaves its share to the others).
//   ember-pool-bench [-t threads] [--iters N] [--gaps US,US,...] [--work US,US,...] [--units-per-thread N]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels-cpu/thread-pool.h"
#include "tests/bench/bench-types.h"

using namespace ember;

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
    int threads = 2;
    int iters = 2000;
    std::vector<double> gaps = {0, 20, 100, 1000};  // us the workers stay idle before each call
    std::vector<double> work = {0, 2, 10};          // us of busy work per unit
    int units_per_thread = 2;
};

[[noreturn]] void usage(const std::string& msg) {
    ember_bench::bench_usage("ember-pool-bench",
                             "[-t threads] [--iters N] [--gaps US,US,...] [--work US,US,...] [--units-per-thread N]",
                             msg);
}

std::vector<double> parse_list(const std::string& flag, const std::string& list) {
    std::vector<double> out;
    for (const std::string& item : ember_bench::bench_split_list(list)) {
        char* end = nullptr;
        const double v = std::strtod(item.c_str(), &end);
        if (item.empty() || *end != '\0' || !(v >= 0)) usage(flag + ": expected numbers >= 0, got '" + list + "'");
        out.push_back(v);
    }
    return out;
}

Args parse(int argc, char** argv) {
    Args a;
    for (ember_bench::BenchFlags f(argc, argv, usage); f.next();) {
        const std::string& k = f.flag();
        if (k == "-t" || k == "--threads") {
            a.threads = std::atoi(f.value().c_str());
        } else if (k == "--iters") {
            a.iters = std::atoi(f.value().c_str());
        } else if (k == "--gaps") {
            a.gaps = parse_list(k, f.value());
        } else if (k == "--work") {
            a.work = parse_list(k, f.value());
        } else if (k == "--units-per-thread") {
            a.units_per_thread = std::atoi(f.value().c_str());
        } else {
            usage("unknown flag " + k);
        }
    }
    if (a.threads < 1 || a.iters < 1 || a.units_per_thread < 1)
        usage("-t, --iters and --units-per-thread must be >= 1");
    return a;
}

// Busy work of `us` microseconds on this thread (reads the clock, so it lasts that long on any core).
void spin_for(double us) {
    if (us <= 0) return;
    const auto end = Clock::now() + std::chrono::nanoseconds((int64_t)(us * 1e3));
    while (Clock::now() < end) {
    }
}

// A small index per thread, taken at its first call: the threads that ran units of a call.
int thread_slot() {
    static std::atomic<int> next{0};
    thread_local const int slot = next.fetch_add(1);
    return slot;
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse(argc, argv);
    ThreadPool pool(a.threads);
    const int64_t units = (int64_t)a.threads * a.units_per_thread;
    std::printf("ember-pool-bench: %d threads, %lld units a call, %d calls per case\n", a.threads, (long long)units,
                a.iters);
    std::printf("%9s %9s %12s %14s %14s %13s\n", "gap us", "work us", "ideal us", "over best us", "over median us",
                "idle threads");
    for (double gap : a.gaps) {
        for (double work : a.work) {
            // Every unit is counted, so that a call that skipped units would show (and fail).
            std::vector<int64_t> seen(units);
            std::vector<std::atomic<int>> ran(256);  // per thread slot: units of this call
            int64_t idle_sum = 0;
            std::vector<double> over;
            over.reserve(a.iters);
            const double ideal = work * (double)units / (double)a.threads;
            for (int it = 0; it < a.iters + 10; it++) {
                spin_for(gap);
                std::fill(seen.begin(), seen.end(), 0);
                for (auto& r : ran) r.store(0, std::memory_order_relaxed);
                const auto t0 = Clock::now();
                pool.parallel_for(units, 1, [&](int64_t b, int64_t e) {
                    const int slot = thread_slot();
                    for (int64_t u = b; u < e; u++) {
                        spin_for(work);
                        seen[(size_t)u]++;
                    }
                    if (slot < (int)ran.size()) ran[(size_t)slot].fetch_add(1, std::memory_order_relaxed);
                });
                const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
                for (int64_t u = 0; u < units; u++) {
                    if (seen[(size_t)u] != 1) {
                        std::printf("FAIL: unit %lld ran %lld times\n", (long long)u, (long long)seen[(size_t)u]);
                        return 1;
                    }
                }
                int busy = 0;
                for (const auto& r : ran) busy += r.load(std::memory_order_relaxed) > 0;
                if (it >= 10) {  // the first calls warm the workers up
                    over.push_back(us - ideal);
                    idle_sum += a.threads - busy;
                }
            }
            std::printf("%9.0f %9.1f %12.1f %14.2f %14.2f %13.2f\n", gap, work, ideal,
                        *std::min_element(over.begin(), over.end()), ember_bench::bench_median(over),
                        (double)idle_sum / a.iters);
        }
    }
    return 0;
}
