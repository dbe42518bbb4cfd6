#include "engine/job-thread.h"

#include <stdexcept>
#include <utility>

namespace ember {

JobThread::~JobThread() {
    if (!thread_.joinable()) return;
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

void JobThread::post(std::function<void()> job) {
    if (busy()) throw std::logic_error("JobThread::post: the previous job was not waited for");
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    {
        std::lock_guard<std::mutex> lock(mu_);
        job_ = std::move(job);
        error_ = nullptr;
        failed_.store(false, std::memory_order_release);
        busy_.store(true, std::memory_order_release);
    }
    cv_.notify_all();
}

void JobThread::wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !busy_.load(std::memory_order_acquire); });
    if (error_) {
        std::exception_ptr e = std::move(error_);
        error_ = nullptr;
        std::rethrow_exception(e);
    }
}

void JobThread::loop() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [this] { return stop_ || job_; });
            if (!job_) return;  // stopping; a job posted before the stop still runs
            job = std::move(job_);
            job_ = nullptr;
        }
        std::exception_ptr error;
        try {
            job();
        } catch (...) {
            error = std::current_exception();
        }
        {
            std::lock_guard<std::mutex> lock(mu_);
            error_ = error;
            if (error) failed_.store(true, std::memory_order_release);
            busy_.store(false, std::memory_order_release);
        }
        cv_.notify_all();
    }
}

}  // namespace ember
