// A fixed pool of worker threads for data-parallel loops; the calling thread takes part as worker 0.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace ember {

class ThreadPool {
public:
    // n_threads >= 1 (including the caller). Worker t (t = 1 .. n_threads - 1) with t < pin_cpus.size() runs only
    // on pin_cpus[t] (Linux; ignored elsewhere); workers past the list are not pinned, and the caller, worker 0,
    // keeps its own affinity (pin_cpus[0] is left to it).
    explicit ThreadPool(int n_threads, const std::vector<int>& pin_cpus = {});
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }
    // Runs fn(begin, end) over disjoint chunks covering [0, n), chunks of at least `grain` items, spread over
    // all threads, and returns when all are done. Not re-entrant: fn must not call parallel_for.
    // Chunks are claimed dynamically and shrink as the work runs out (guided: long first, one grain last);
    // an exception thrown by fn is rethrown here once all chunks are done. One caller at a time per pool.
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

private:
    struct State;
    State* state_;
    int n_threads_;
};

}  // namespace ember
