// ember-attention-bench: one decode token's attention over a long KV cache on the CPU, the engine's grouped path
// (attention_tokens: the query heads of a KV head read its keys and values together) next to the per-head reference
// (attention_heads, a work item per head, each reading its KV head's rows), on the same thread pool. Checks the two
// against each other (exit 1 if they differ beyond 1e-4), then prints the best time per token and the cache bytes
// read once per token per second next to this machine's read bandwidth.
//   ember-attention-bench [-t threads] [--n-kv N] [--heads H] [--kv-heads K] [--head-dim D] [--type f32|f16] [-i iters]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/memory-bandwidth.h"
#include "kernels-cpu/attention.h"
#include "kernels-cpu/quant.h"
#include "kernels-cpu/thread-pool.h"
#include "tests/bench/bench-types.h"

using namespace ember;

namespace {

struct Args {
    int threads = (int)std::max(1u, std::thread::hardware_concurrency());
    int n_kv = 4096, heads = 32, kv_heads = 8, head_dim = 128, iters = 20;
    DType type = DType::DTYPE_F32;
};

[[noreturn]] void usage(const std::string& msg) {
    ember_bench::bench_usage("ember-attention-bench",
                             "[-t threads] [--n-kv N] [--heads H] [--kv-heads K] [--head-dim D] [--type f32|f16] "
                             "[-i iters]",
                             msg);
}

Args parse(int argc, char** argv) {
    Args a;
    for (ember_bench::BenchFlags f(argc, argv, usage); f.next();) {
        const std::string& k = f.flag();
        auto val = [&] { return f.value(); };
        if (k == "-t") a.threads = std::atoi(val().c_str());
        else if (k == "--n-kv") a.n_kv = std::atoi(val().c_str());
        else if (k == "--heads") a.heads = std::atoi(val().c_str());
        else if (k == "--kv-heads") a.kv_heads = std::atoi(val().c_str());
        else if (k == "--head-dim") a.head_dim = std::atoi(val().c_str());
        else if (k == "-i") a.iters = std::atoi(val().c_str());
        else if (k == "--type") {
            const std::string v = val();
            if (v == "f32") a.type = DType::DTYPE_F32;
            else if (v == "f16") a.type = DType::DTYPE_F16;
            else usage("--type: expected f32 or f16, got '" + v + "'");
        } else {
            usage("unknown flag " + k);
        }
    }
    if (a.threads < 1 || a.n_kv < 1 || a.heads < 1 || a.kv_heads < 1 || a.head_dim < 1 || a.iters < 1)
        usage("every count must be at least 1");
    if (a.heads % a.kv_heads != 0) usage("--heads must be a multiple of --kv-heads");
    return a;
}

template <typename F>
double best_ms(int iters, F&& f) {
    double best = 1e30;
    for (int i = 0; i < iters; i++) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    const Args args = parse(argc, argv);
    try {
        ThreadPool pool(args.threads);
        const int64_t kv_stride = (int64_t)args.kv_heads * args.head_dim, q_dim = (int64_t)args.heads * args.head_dim;
        std::mt19937 rng(7);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> q(q_dim), kv((size_t)args.n_kv * kv_stride);
        for (float& x : q) x = nd(rng);
        const size_t cache_bytes = dtype_row_bytes(args.type, (int64_t)kv.size());
        std::vector<uint8_t> k(cache_bytes), v(cache_bytes);
        for (float& x : kv) x = nd(rng);
        quantize_row(args.type, kv.data(), k.data(), (int64_t)kv.size());
        for (float& x : kv) x = nd(rng);
        quantize_row(args.type, kv.data(), v.data(), (int64_t)kv.size());

        AttentionArgs a;
        a.q = q.data();
        a.k_cache = k.data();
        a.v_cache = v.data();
        a.k_type = a.v_type = args.type;
        a.n_kv = args.n_kv;
        a.n_heads = args.heads;
        a.n_kv_heads = args.kv_heads;
        a.head_dim = args.head_dim;
        a.kv_stride = kv_stride;
        a.scale = 1.0f / std::sqrt((float)args.head_dim);
        std::vector<float> out_ref(q_dim), out_grouped(q_dim), partials;
        auto per_head = [&]() {
            pool.parallel_for(args.heads, 1, [&](int64_t b, int64_t e) {
                thread_local std::vector<float> scores;
                if ((int)scores.size() < args.n_kv) scores.resize(args.n_kv);
                AttentionArgs h = a;
                h.out = out_ref.data();
                h.scores = scores.data();
                for (int64_t i = b; i < e; i++) attention_heads(h, (int)i, (int)i + 1);
            });
        };
        AttentionArgs g = a;
        g.out = out_grouped.data();
        auto grouped = [&]() { attention_tokens(&g, 1, partials, pool); };
        per_head();
        grouped();
        double worst = 0;
        for (int64_t i = 0; i < q_dim; i++)
            worst = std::max(worst, (double)std::fabs(out_grouped[i] - out_ref[i]) / (1 + std::fabs(out_ref[i])));
        if (worst > 1e-4) {
            std::fprintf(stderr, "ember-attention-bench: grouped and per-head outputs differ by %.3g\n", worst);
            return 1;
        }
        const double bw = memory_bandwidth_probe((size_t)1 << 30, args.threads, 3);
        std::printf("attention of one token: %d heads over %d KV heads of %d, %d positions, %s cache (%.1f MiB), %d "
                    "threads; read bandwidth %.1f GB/s\n",
                    args.heads, args.kv_heads, args.head_dim, args.n_kv, dtype_name(args.type),
                    2.0 * cache_bytes / 1048576.0, args.threads, bw);
        for (int round = 0; round < 2; round++) {
            for (const auto& [name, fn] : {std::pair<const char*, std::function<void()>>{"per head (reference)", per_head},
                                           {"grouped (engine)", grouped}}) {
                const double ms = best_ms(args.iters, fn);
                const double gbs = 2.0 * cache_bytes / (ms * 1e-3) / 1e9;
                std::printf("%-22s %9.3f ms %8.1f GB/s of the cache  %5.1f %% of read bandwidth\n", name, ms, gbs,
                            100.0 * gbs / bw);
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ember-attention-bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
