#include "engine/cpu-info.h"

#include "kernels-cpu/matmul.h"

#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(_WIN32)
#define WIN32_LEAN_AND_MEAN
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#elif defined(__linux__)
#include <sched.h>
#include <unistd.h>
#endif

namespace ember {

namespace {

#if !defined(_WIN32) && !defined(__APPLE__)
// The (package, core) pair of a logical CPU from /sys; false when /sys does not say.
bool cpu_core_of(int cpu, std::pair<std::string, std::string>* core) {
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream pkg_file(dir + "physical_package_id"), core_file(dir + "core_id");
    return (bool)(pkg_file >> core->first) && (bool)(core_file >> core->second);
}
#endif

// Physical cores as the OS counts them, or 0 when it does not say.
int os_physical_cores() {
#if defined(_WIN32)
    // One SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX record of RelationProcessorCore per core, of variable size.
    DWORD bytes = 0;
    GetLogicalProcessorInformationEx(RelationProcessorCore, nullptr, &bytes);
    if (GetLastError() != ERROR_INSUFFICIENT_BUFFER || bytes == 0) return 0;
    std::vector<char> buf(bytes);
    auto* info = reinterpret_cast<SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX*>(buf.data());
    if (!GetLogicalProcessorInformationEx(RelationProcessorCore, info, &bytes)) return 0;
    int n = 0;
    for (DWORD off = 0; off < bytes; n++)
        off += reinterpret_cast<SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX*>(buf.data() + off)->Size;
    return n;
#elif defined(__APPLE__)
    int n = 0;
    size_t len = sizeof n;
    return sysctlbyname("hw.physicalcpu", &n, &len, nullptr, 0) == 0 ? n : 0;
#else
    // Linux: distinct (package, core) pairs of the online CPUs.
    std::set<std::pair<std::string, std::string>> cores;
    const unsigned n_hw = std::thread::hardware_concurrency();
    for (unsigned cpu = 0; cpu < n_hw; cpu++) {
        std::pair<std::string, std::string> core;
        if (cpu_core_of((int)cpu, &core)) cores.insert(core);
    }
    return (int)cores.size();
#endif
}

}  // namespace

uint64_t host_physical_memory_bytes() {
#if defined(_WIN32)
    MEMORYSTATUSEX status;
    status.dwLength = sizeof status;
    return GlobalMemoryStatusEx(&status) ? (uint64_t)status.ullTotalPhys : 0;
#elif defined(__APPLE__)
    uint64_t bytes = 0;
    size_t len = sizeof bytes;
    return sysctlbyname("hw.memsize", &bytes, &len, nullptr, 0) == 0 ? bytes : 0;
#elif defined(__linux__)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
#else
    return 0;
#endif
}

int cpu_physical_cores() {
    const int n = os_physical_cores();
    if (n > 0) return n;
    const unsigned n_hw = std::thread::hardware_concurrency();
    return n_hw > 0 ? (int)n_hw : 1;
}

std::vector<int> cpu_core_leaders() {
    std::vector<int> leaders;
#if defined(__linux__)
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return leaders;
    std::set<std::pair<std::string, std::string>> seen;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        std::pair<std::string, std::string> core;
        if (!cpu_core_of(cpu, &core)) return {};  // topology unknown: no pinning plan
        if (seen.insert(core).second) leaders.push_back(cpu);
    }
#endif
    return leaders;
}

const char* cpu_blas_coretype_advice() { return matmul_blas_coretype_advice(); }

}  // namespace ember
