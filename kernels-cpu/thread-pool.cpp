// Persistent workers woken by a job generation: after a job they spin on it for a short while (decode calls the
// pool ~250 times per token, so the next job usually arrives within microseconds), then sleep on a condition
// variable so that an idle pool costs no CPU.
//
// Work is counted in units of `grain` items. One 64-bit atomic `ticket` = (generation << 32) | next unit. A thread
// claims a chunk of job g by a CAS that only succeeds while the ticket still says g; chunks are guided: a claim
// takes 1/(2 n_threads) of the remaining units (at least one), so the first chunks are long (few claims, long
// sequential streams) and the last ones short (little idle time at the end). The caller waits for all units to be
// *done*, not for every worker to check in, so a worker that is asleep or descheduled never delays a call (it finds
// the job gone and waits for the next). A job's parameters stay valid until its last unit is done.
#include "kernels-cpu/thread-pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace ember {

namespace {

// How long an idle worker spins before it sleeps. Long enough to bridge the gap between two matvecs of one
// token (norms, rope, attention in between), short enough not to burn a core when decoding stops.
constexpr auto kSpin = std::chrono::microseconds(500);
// Spin with the pause instruction first, then with sched_yield, which returns at once on an idle core and lets
// descheduled threads run on an oversubscribed one.
constexpr uint32_t kPauseSpins = 256;
// A claim takes remaining / (kGuided * n_threads) units.
constexpr int64_t kGuided = 2;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

inline void backoff(uint32_t i) {
    if (i < kPauseSpins) {
        cpu_relax();
    } else {
        std::this_thread::yield();
    }
}

// The pool whose job this thread is running, to refuse nested parallel_for calls (they would deadlock).
thread_local const ThreadPool* tl_running = nullptr;

}  // namespace

struct ThreadPool::State {
    alignas(64) std::atomic<uint64_t> ticket{0};  // (generation << 32) | next unit to claim
    alignas(64) std::atomic<int64_t> done{0};     // units of the current job finished
    alignas(64) std::atomic<int> sleepers{0};
    std::atomic<bool> stop{false};
    std::atomic<bool> failed{false};
    std::exception_ptr error;  // the job's first exception; written once, by whoever set `failed`

    // The current job: written by the caller after it closes the old ticket and before it publishes the new
    // generation (a late worker may read them while the next job is being set up; its CAS then fails).
    std::atomic<const std::function<void(int64_t, int64_t)>*> fn{nullptr};
    std::atomic<int64_t> n{0}, unit{1}, n_units{0}, divisor{1};

    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::thread> workers;
};

namespace {

uint32_t gen_of(uint64_t t) { return (uint32_t)(t >> 32); }

// Claims and runs chunks of job `gen` until none is left (or the ticket moved on to another job).
template <typename State>
void run_chunks(State& s, uint32_t gen) {
    uint64_t t = s.ticket.load(std::memory_order_acquire);
    for (;;) {
        if (gen_of(t) != gen) return;
        // stale reads of the job fields are harmless: the CAS below then fails
        const int64_t next = (int64_t)(uint32_t)t, n_units = s.n_units.load(std::memory_order_acquire);
        if (next >= n_units) return;
        const int64_t take = std::max<int64_t>(1, (n_units - next) / s.divisor.load(std::memory_order_relaxed));
        if (!s.ticket.compare_exchange_weak(t, t + (uint64_t)take, std::memory_order_acquire,
                                            std::memory_order_acquire)) {
            continue;
        }
        // Units [next, next + take) of job `gen` are ours; the job stays valid until we count them done.
        if (!s.failed.load(std::memory_order_relaxed)) {
            const int64_t unit = s.unit.load(std::memory_order_relaxed);
            const int64_t begin = next * unit;
            const int64_t end = std::min(s.n.load(std::memory_order_relaxed), (next + take) * unit);
            try {
                (*s.fn.load(std::memory_order_relaxed))(begin, end);
            } catch (...) {
                if (!s.failed.exchange(true)) s.error = std::current_exception();
            }
        }
        s.done.fetch_add(take, std::memory_order_release);
        t = s.ticket.load(std::memory_order_acquire);
    }
}

// Returns the first generation different from `seen`: spins for kSpin, then sleeps.
template <typename State>
uint32_t wait_for_job(State& s, uint32_t seen) {
    const auto t0 = std::chrono::steady_clock::now();
    for (uint32_t i = 1;; i++) {
        const uint32_t g = gen_of(s.ticket.load(std::memory_order_acquire));
        if (g != seen) return g;
        backoff(i);
        if ((i & 63) == 0 && std::chrono::steady_clock::now() - t0 > kSpin) break;
    }
    std::unique_lock<std::mutex> lock(s.mu);
    s.sleepers.fetch_add(1, std::memory_order_seq_cst);
    uint32_t g;
    while ((g = gen_of(s.ticket.load(std::memory_order_seq_cst))) == seen) s.cv.wait(lock);
    s.sleepers.fetch_sub(1, std::memory_order_relaxed);
    return g;
}

}  // namespace

ThreadPool::ThreadPool(int n_threads, const std::vector<int>& pin_cpus) : state_(nullptr), n_threads_(n_threads) {
    if (n_threads < 1) {
        throw std::invalid_argument("ThreadPool: n_threads = " + std::to_string(n_threads) + ", expected >= 1");
    }
    state_ = new State();
    State& s = *state_;
    s.workers.reserve(n_threads - 1);
    for (int t = 1; t < n_threads; t++) {
        const int cpu = (size_t)t < pin_cpus.size() ? pin_cpus[(size_t)t] : -1;  // workers past the list float
        s.workers.emplace_back([this, &s, cpu] {
#if defined(__linux__)
            if (cpu >= 0 && cpu < CPU_SETSIZE) {  // best effort: a refused mask leaves the worker unpinned
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(cpu, &set);
                pthread_setaffinity_np(pthread_self(), sizeof set, &set);
            }
#else
            (void)cpu;
#endif
            tl_running = this;  // a worker only ever runs this pool's jobs
            uint32_t seen = 0;
            for (;;) {
                seen = wait_for_job(s, seen);
                if (s.stop.load(std::memory_order_acquire)) return;
                run_chunks(s, seen);
            }
        });
    }
}

ThreadPool::~ThreadPool() {
    State& s = *state_;
    s.stop.store(true, std::memory_order_release);
    s.ticket.fetch_add(1ull << 32, std::memory_order_seq_cst);  // a new generation wakes everyone
    {
        std::lock_guard<std::mutex> lock(s.mu);
        s.cv.notify_all();
    }
    for (std::thread& t : s.workers) t.join();
    delete state_;
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    if (tl_running == this) throw std::logic_error("ThreadPool::parallel_for: nested call from inside fn");
    int64_t unit = std::max<int64_t>(grain, 1);
    if ((n + unit - 1) / unit >= (int64_t)1 << 31) {  // the ticket counts units in 32 bits
        unit = ((n >> 31) + 1 + unit - 1) / unit * unit;
    }
    const int64_t n_units = (n + unit - 1) / unit;
    if (n_threads_ == 1 || n_units == 1) {
        tl_running = this;
        try {
            fn(0, n);
        } catch (...) {
            tl_running = nullptr;
            throw;
        }
        tl_running = nullptr;
        return;
    }

    State& s = *state_;
    // Close the previous job's ticket before touching the job fields. A worker that read the old ticket after the
    // last unit was claimed may still be about to read n_units; if it sees this job's (release below, acquire in
    // run_chunks), the close happened before its CAS, so the CAS on the old ticket value fails instead of claiming
    // units of this job under the old generation.
    const uint64_t prev = s.ticket.load(std::memory_order_relaxed);
    s.ticket.store((prev & ~0xFFFFFFFFull) | 0xFFFFFFFFull, std::memory_order_seq_cst);
    s.fn.store(&fn, std::memory_order_relaxed);
    s.n.store(n, std::memory_order_relaxed);
    s.unit.store(unit, std::memory_order_relaxed);
    s.n_units.store(n_units, std::memory_order_release);
    s.divisor.store(kGuided * n_threads_, std::memory_order_relaxed);
    s.done.store(0, std::memory_order_relaxed);
    s.failed.store(false, std::memory_order_relaxed);
    s.error = nullptr;
    const uint32_t gen = gen_of(prev) + 1;
    s.ticket.store((uint64_t)gen << 32, std::memory_order_seq_cst);  // publishes the job (release)
    if (s.sleepers.load(std::memory_order_seq_cst) > 0) {
        std::lock_guard<std::mutex> lock(s.mu);
        s.cv.notify_all();
    }

    tl_running = this;
    run_chunks(s, gen);
    tl_running = nullptr;
    for (uint32_t i = 1; s.done.load(std::memory_order_acquire) != n_units; i++) backoff(i);
    if (s.failed.load(std::memory_order_relaxed)) {
        std::exception_ptr e = s.error;
        s.error = nullptr;
        std::rethrow_exception(e);
    }
}

}  // namespace ember
