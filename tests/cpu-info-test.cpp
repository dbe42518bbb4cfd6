// cpu_physical_cores and cpu_core_leaders against the thread's affinity mask and /sys's topology.
#include "engine/cpu-info.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace ember {
namespace {

TEST(CpuInfo, PhysicalCoresIsAtLeastOne) {
    const int n = cpu_physical_cores();
    EXPECT_GE(n, 1);
    if (std::thread::hardware_concurrency() > 0) {
        EXPECT_LE((unsigned)n, std::thread::hardware_concurrency());
    }
}

#if defined(__linux__)
// The same figure as /proc/meminfo's MemTotal (kB), within 64 MiB.
TEST(CpuInfo, PhysicalMemoryMatchesProcMeminfo) {
    const uint64_t bytes = host_physical_memory_bytes();
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    uint64_t kb = 0;
    while (meminfo >> key && key != "MemTotal:") meminfo.ignore(1 << 10, '\n');
    ASSERT_EQ(key, "MemTotal:") << "/proc/meminfo has no MemTotal line";
    meminfo >> kb;
    EXPECT_GT(bytes, 0u);
    EXPECT_LE(bytes, kb * 1024 + (64ull << 20));
    EXPECT_LE(kb * 1024, bytes + (64ull << 20));
}

std::pair<std::string, std::string> core_of(int cpu) {
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream pkg(dir + "physical_package_id"), core(dir + "core_id");
    std::string p, c;
    pkg >> p;
    core >> c;
    return {p, c};
}

// Ascending CPUs this thread may run on, no two on one physical core, and every allowed core represented.
TEST(CpuInfo, CoreLeadersAreAllowedAndOnePerCore) {
    const std::vector<int> leaders = cpu_core_leaders();
    if (leaders.empty()) GTEST_SKIP() << "no CPU topology in /sys on this machine";
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    std::set<std::pair<std::string, std::string>> cores, allowed_cores;
    for (size_t i = 0; i < leaders.size(); i++) {
        EXPECT_TRUE(CPU_ISSET(leaders[i], &allowed)) << "CPU " << leaders[i] << " is outside the affinity mask";
        if (i > 0) {
            EXPECT_LT(leaders[i - 1], leaders[i]);
        }
        EXPECT_TRUE(cores.insert(core_of(leaders[i])).second) << "two leaders on the core of CPU " << leaders[i];
    }
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &allowed)) allowed_cores.insert(core_of(c));
    EXPECT_EQ(cores, allowed_cores);
}

// A thread confined to one CPU gets exactly that CPU.
TEST(CpuInfo, CoreLeadersFollowTheAffinityMask) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    int last = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &allowed)) last = c;
    ASSERT_GE(last, 0);
    std::vector<int> got;
    std::thread t([&] {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(last, &one);
        ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof one, &one), 0);
        got = cpu_core_leaders();
    });
    t.join();
    if (got.empty()) GTEST_SKIP() << "no CPU topology in /sys on this machine";
    EXPECT_EQ(got, std::vector<int>{last});
}
#endif

}  // namespace
}  // namespace ember
