// A host thread that runs one posted job at a time while its poster does other work, e.g. queueing a decode step's
// GPU work while the poster runs the step's CPU work. Started with the first job, joined by the destructor.
#pragma once
#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace ember {

class JobThread {
public:
    JobThread() = default;
    ~JobThread();
    JobThread(const JobThread&) = delete;
    JobThread& operator=(const JobThread&) = delete;

    // Starts job on the thread; the previous job must have been waited for. What job refers to must live until
    // wait() returns.
    void post(std::function<void()> job);
    // Returns once the posted job is done; rethrows what it threw. Returns at once when nothing is posted.
    void wait();
    // Whether the posted job is still running / ended with an exception (callers waiting on its effects poll these).
    bool busy() const { return busy_.load(std::memory_order_acquire); }
    bool failed() const { return failed_.load(std::memory_order_acquire); }

private:
    void loop();

    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::function<void()> job_;
    std::exception_ptr error_;
    bool stop_ = false;
    std::atomic<bool> busy_{false};
    std::atomic<bool> failed_{false};
};

}  // namespace ember
