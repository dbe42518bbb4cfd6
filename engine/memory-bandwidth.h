// Achievable memory read bandwidth of this machine, measured the way a decode step uses memory: the F32 matvec
// kernel on the thread pool streaming a matrix much larger than the caches. Token generation reads every weight once
// per token, so bytes-per-token / this bandwidth bounds its speed.
#pragma once
#include <cstddef>

namespace ember {

// Best read bandwidth over n_reps passes of n_threads threads over a `bytes` buffer, in GB/s (1e9 bytes/s).
// Throws ember::Error when bytes < 1 MiB, n_threads < 1 or n_reps < 1.
double memory_bandwidth_probe(size_t bytes, int n_threads, int n_reps);

}  // namespace ember
