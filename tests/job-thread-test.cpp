// JobThread: a posted job runs on another thread while the poster goes on; wait() returns after it and rethrows
// what it threw; busy()/failed() say where it is; posting over a running job is refused.
#include "engine/job-thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace ember {
namespace {

TEST(JobThread, RunsOnAnotherThreadWhileThePosterGoesOn) {
    JobThread t;
    t.wait();  // nothing posted: returns at once
    std::atomic<bool> release{false};
    std::atomic<int> stage{0};
    std::thread::id ran_on;
    t.post([&] {
        ran_on = std::this_thread::get_id();
        stage = 1;
        while (!release.load()) std::this_thread::yield();
        stage = 2;
    });
    while (stage.load() == 0) std::this_thread::yield();  // the job started without the poster waiting
    EXPECT_TRUE(t.busy());
    EXPECT_THROW(t.post([] {}), std::logic_error);
    release = true;
    t.wait();
    EXPECT_EQ(stage.load(), 2);
    EXPECT_FALSE(t.busy());
    EXPECT_FALSE(t.failed());
    EXPECT_NE(ran_on, std::this_thread::get_id());
}

TEST(JobThread, RethrowsTheJobsExceptionOnceAndRunsTheNextJob) {
    JobThread t;
    t.post([] { throw std::runtime_error("queue failed at layer 3"); });
    while (t.busy()) std::this_thread::yield();
    EXPECT_TRUE(t.failed());
    try {
        t.wait();
        FAIL() << "wait() returned without the job's exception";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "queue failed at layer 3");
    }
    t.wait();  // reported once
    int runs = 0;
    for (int i = 0; i < 100; i++) {
        t.post([&] { runs++; });
        t.wait();
    }
    EXPECT_EQ(runs, 100);
    EXPECT_FALSE(t.failed());
}

TEST(JobThread, DestructorJoinsAfterARunningJob) {
    std::atomic<bool> done{false};
    {
        JobThread t;
        t.post([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            done = true;
        });
    }
    EXPECT_TRUE(done.load());
}

}  // namespace
}  // namespace ember
