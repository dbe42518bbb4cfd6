// What the host CPU offers: physical cores (for the default thread count), and the memory beside it.
#pragma once
#include <cstdint>
#include <vector>

namespace ember {

// Distinct (package, core) pairs from /sys on Linux, the OS's count of cores on Windows and macOS; hardware
// threads where the OS does not say; at least 1.
int cpu_physical_cores();

// One logical CPU of every physical core this process may run on (its affinity mask), cores in order of their first
// CPU: where pinned workers go, so that no two share a core through SMT. Linux only; empty elsewhere or when /sys
// does not say.
std::vector<int> cpu_core_leaders();

// The host's physical memory in bytes (sysconf on Linux, hw.memsize on macOS, GlobalMemoryStatusEx on Windows); 0
// where the OS does not say.
uint64_t host_physical_memory_bytes();

// The OPENBLAS_CORETYPE value this CPU should run with when OpenBLAS fell back to its generic kernels on it (see
// kernels-cpu/matmul.h), else "".
const char* cpu_blas_coretype_advice();

}  // namespace ember
