// ember-sparse-ffn-bench: one FFN layer of a 7B shape (dim 4096, n_ff 11008, F16) with a random active set.
// Checks sparse_gate_up / sparse_down against their references, then prints GB/s of weight rows actually read
// by the sparse FFN next to the dense FFN (three matvecs) reading all weights.
// Usage: ember-sparse-ffn-bench [--threads N] [--active-frac F] [--iters N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/sparse-ffn.h"

using namespace ember;

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<uint16_t> random_f16(size_t n, float scale, std::mt19937& rng) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<uint16_t> v(n);
    for (auto& h : v) h = f32_to_fp16(d(rng));
    return v;
}
}  // namespace

int main(int argc, char** argv) {
    int threads = 2, iters = 20;
    double frac = 0.10;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--threads") threads = std::atoi(argv[i + 1]);
        else if (a == "--active-frac") frac = std::atof(argv[i + 1]);
        else if (a == "--iters") iters = std::atoi(argv[i + 1]);
        else { std::fprintf(stderr, "unknown option %s\n", a.c_str()); return 2; }
    }
    const int64_t dim = 4096, n_ff = 11008;
    const DType wt = DType::DTYPE_F16;
    std::mt19937 rng(42);
    const auto gate = random_f16((size_t)n_ff * dim, 0.02f, rng);
    const auto up = random_f16((size_t)n_ff * dim, 0.02f, rng);
    const auto down = random_f16((size_t)dim * n_ff, 0.02f, rng);  // ggml layout (dim, n_ff)
    std::vector<uint16_t> down_t((size_t)n_ff * dim);
    sparse_down_transpose(wt, down.data(), wt, down_t.data(), dim, n_ff);
    std::vector<float> x(dim);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& f : x) f = nd(rng);
    std::vector<uint8_t> xq(dot_vec_bytes(wt, dim));
    dot_prepare_vec(wt, x.data(), xq.data(), dim);

    std::vector<int32_t> active;
    std::uniform_real_distribution<double> ud(0.0, 1.0);
    for (int64_t i = 0; i < n_ff; i++)
        if (ud(rng) < frac) active.push_back((int32_t)i);
    const int64_t k = (int64_t)active.size();

    ThreadPool pool(threads);
    // SiLU so every listed neuron reads both rows (ReLU would skip the up row of negative gates).
    const SparseGateUpWeights w{wt, gate.data(), up.data(), dim, SparseAct::SPARSE_ACT_SILU};
    std::vector<float> h(k), h_ref(k), y(dim), y_ref(dim);
    sparse_gate_up(w, xq.data(), active.data(), k, h.data(), pool);
    sparse_down(wt, down_t.data(), h.data(), active.data(), k, y.data(), dim, pool);
    sparse_gate_up_ref(w, xq.data(), active.data(), k, h_ref.data());
    sparse_down_ref(wt, down_t.data(), h.data(), active.data(), k, y_ref.data(), dim);
    double err = 0.0, scale = 0.0;
    for (int64_t j = 0; j < k; j++) err = std::max(err, (double)std::fabs(h[j] - h_ref[j]));
    for (int64_t c = 0; c < dim; c++) {
        err = std::max(err, (double)std::fabs(y[c] - y_ref[c]));
        scale = std::max(scale, (double)std::fabs(y_ref[c]));
    }
    std::printf("check: max abs err %.3g (|y| max %.3g) %s\n", err, scale, err <= 1e-4 * std::max(1.0, scale) ? "ok" : "FAIL");
    if (err > 1e-4 * std::max(1.0, scale)) return 1;

    const double row_bytes = (double)dim * 2.0;
    std::vector<float> g(n_ff), u(n_ff), hd(n_ff), yd(dim);
    auto t_sparse = [&] {
        sparse_gate_up(w, xq.data(), active.data(), k, h.data(), pool);
        sparse_down(wt, down_t.data(), h.data(), active.data(), k, y.data(), dim, pool);
    };
    std::vector<uint8_t> hq(dot_vec_bytes(wt, n_ff));
    auto t_dense = [&] {
        matvec(wt, gate.data(), xq.data(), g.data(), n_ff, dim, pool);
        matvec(wt, up.data(), xq.data(), u.data(), n_ff, dim, pool);
        for (int64_t i = 0; i < n_ff; i++) hd[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
        dot_prepare_vec(wt, hd.data(), hq.data(), n_ff);
        matvec(wt, down.data(), hq.data(), yd.data(), dim, n_ff, pool);
    };
    auto best_of = [&](auto fn) {
        fn();  // warm up
        double best = 1e30;
        for (int i = 0; i < iters; i++) {
            const auto t0 = Clock::now();
            fn();
            best = std::min(best, seconds_since(t0));
        }
        return best;
    };
    const double ts = best_of(t_sparse), td = best_of(t_dense);
    const double tgu = best_of([&] { sparse_gate_up(w, xq.data(), active.data(), k, h.data(), pool); });
    const double tdn = best_of([&] { sparse_down(wt, down_t.data(), h.data(), active.data(), k, y.data(), dim, pool); });
    const double bytes_s = 3.0 * k * row_bytes, bytes_d = 3.0 * n_ff * row_bytes;
    std::printf("F16 dim %lld n_ff %lld, %d threads, simd %s, active %lld (%.1f%%)\n", (long long)dim,
                (long long)n_ff, threads, dot_simd_level(), (long long)k, 100.0 * k / n_ff);
    std::printf("sparse FFN: %8.3f ms  %7.1f MB read  %6.2f GB/s\n", ts * 1e3, bytes_s / 1e6, bytes_s / ts / 1e9);
    std::printf("  gate+up:  %8.3f ms  %6.2f GB/s\n", tgu * 1e3, 2.0 * k * row_bytes / tgu / 1e9);
    std::printf("  down:     %8.3f ms  %6.2f GB/s\n", tdn * 1e3, 1.0 * k * row_bytes / tdn / 1e9);
    std::printf("dense  FFN: %8.3f ms  %7.1f MB read  %6.2f GB/s\n", td * 1e3, bytes_d / 1e6, bytes_d / td / 1e9);
    std::printf("speedup %.2fx (ideal %.2fx)\n", td / ts, (double)n_ff / k);
    return 0;
}
