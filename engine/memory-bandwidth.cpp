#include "engine/memory-bandwidth.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/thread-pool.h"

namespace ember {

double memory_bandwidth_probe(size_t bytes, int n_threads, int n_reps) {
    if (bytes < (1u << 20)) throw Error("memory_bandwidth_probe: buffer must be >= 1 MiB, found " + std::to_string(bytes) + " bytes");
    if (n_threads < 1) throw Error("memory_bandwidth_probe: n_threads must be >= 1, found " + std::to_string(n_threads));
    if (n_reps < 1) throw Error("memory_bandwidth_probe: n_reps must be >= 1, found " + std::to_string(n_reps));

    // An F32 matrix streamed by the same matvec kernel and thread pool a decode step uses, against a vector that
    // stays in cache: what the machine delivers to token generation, without the arithmetic of other dtypes.
    constexpr int64_t n_cols = 4096;
    const int64_t n_rows = std::max<int64_t>(1, (int64_t)(bytes / (n_cols * sizeof(float))));
    ThreadPool pool(n_threads);
    std::unique_ptr<float[]> w(new float[(size_t)(n_rows * n_cols)]);
    // Pages are first touched by the workers that will read them.
    pool.parallel_for(n_rows, 64, [&](int64_t b, int64_t e) {
        for (int64_t i = b * n_cols; i < e * n_cols; i++) w[(size_t)i] = (float)(i & 1023) * (1.0f / 1024.0f);
    });
    std::vector<float> x(n_cols, 1.0f), y((size_t)n_rows);
    std::vector<uint8_t> xq(dot_vec_bytes(DType::DTYPE_F32, n_cols));
    dot_prepare_vec(DType::DTYPE_F32, x.data(), xq.data(), n_cols);

    double best_s = 1e30;
    for (int r = 0; r < n_reps; r++) {
        const auto t0 = std::chrono::steady_clock::now();
        matvec(DType::DTYPE_F32, w.get(), xq.data(), y.data(), n_rows, n_cols, pool);
        best_s = std::min(best_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return (double)(n_rows * n_cols * sizeof(float)) / best_s / 1e9;
}

}  // namespace ember
