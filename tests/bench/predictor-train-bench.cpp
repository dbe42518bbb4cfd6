// ember-predictor-train-bench: training time of one 7B-shaped layer's predictor (dim 4096, n_ff 11008, a few
// thousand samples), per candidate rank and for the whole rank search, as ember-profile spends it per layer.
// Samples come from a seeded low-rank firing rule with power-law firing rates (DESIGN.md, test models): neuron i
// fires when A_i · (B x) > t_i, B: (r0, dim), A: (n_ff, r0), t_i set for a rate drawn from 0.5%..50% log-uniformly.
// Prints per rank: seconds, training GFLOP/s, held-out recall / predicted and true sparsity, predictor bytes and
// expected bytes per token against a Q8_0 FFN; then the rank search (predictor_train_auto) with its stop reason.
//   ember-predictor-train-bench [--threads N] [--samples N] [--epochs N] [--ranks 32,64,...] [--r0 N]
//                               [--type f32|f16|q8_0] [--dim N] [--n-ff N] [--batch N] [--lr X] [--no-search]
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "apps/app-args.h"
#include "kernels-cpu/dtype.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/thread-pool.h"
#include "predictor/train.h"
#include "tests/bench/bench-types.h"

using namespace ember;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU seconds of the process, all threads: on a shared machine, wall time counts other people's work too.
double cpu_seconds() {
    rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Args {
    int threads = 2;
    int64_t samples = 4096;
    int epochs = PredictorTrainArgs().epochs;
    std::vector<int> ranks;  // empty: the ladder
    int r0 = 64;
    DType type = PredictorTrainArgs().weight_type;
    int dim = 4096, n_ff = 11008;
    int batch = PredictorTrainArgs().batch_size;
    float lr = PredictorTrainArgs().lr;
    bool search = true;
};

[[noreturn]] void usage(const std::string& msg) {
    ember_bench::bench_usage("ember-predictor-train-bench",
                             "[--threads N] [--samples N] [--epochs N] [--ranks 32,64,...] [--r0 N] "
                             "[--type f32|f16|q8_0] [--dim N] [--n-ff N] [--batch N] [--lr X] [--no-search]",
                             msg);
}

Args parse(int argc, char** argv) {
    Args a;
    for (ember_bench::BenchFlags f(argc, argv, usage); f.next();) {
        const std::string& k = f.flag();
        if (k == "--no-search") {
            a.search = false;
            continue;
        }
        const std::string v = f.value();
        if (k == "--threads") a.threads = std::atoi(v.c_str());
        else if (k == "--samples") a.samples = std::atoll(v.c_str());
        else if (k == "--epochs") a.epochs = std::atoi(v.c_str());
        else if (k == "--r0") a.r0 = std::atoi(v.c_str());
        else if (k == "--dim") a.dim = std::atoi(v.c_str());
        else if (k == "--n-ff") a.n_ff = std::atoi(v.c_str());
        else if (k == "--batch") a.batch = std::atoi(v.c_str());
        else if (k == "--lr") a.lr = std::strtof(v.c_str(), nullptr);
        else if (k == "--type") {
            if (v == "f32") a.type = DType::DTYPE_F32;
            else if (v == "f16") a.type = DType::DTYPE_F16;
            else if (v == "q8_0") a.type = DType::DTYPE_Q8_0;
            else usage("unknown type " + v);
        } else if (k == "--ranks") {
            size_t p = 0;
            while (p < v.size()) {
                const size_t q = v.find(',', p);
                a.ranks.push_back(std::atoi(v.substr(p, q - p).c_str()));
                p = q == std::string::npos ? v.size() : q + 1;
            }
        } else {
            usage("unknown argument " + k);
        }
    }
    if (a.threads < 1 || a.samples < 10 || a.epochs < 1 || a.r0 < 1 || a.dim < 1 || a.n_ff < 1 || a.batch < 1 ||
        !(a.lr > 0.0f))
        usage("values must be positive (samples >= 10)");
    return a;
}

// Samples of the rule described at the top; x ~ N(0, I).
PredictorSamples make_samples(const Args& a, ThreadPool& pool) {
    std::mt19937_64 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int dim = a.dim, n_ff = a.n_ff, r0 = a.r0;
    std::vector<float> b((size_t)r0 * dim), am((size_t)n_ff * r0), t((size_t)n_ff);
    for (float& v : b) v = nd(rng) / std::sqrt((float)dim);
    for (float& v : am) v = nd(rng) / std::sqrt((float)r0);
    // A_i · (B x) is close to N(0, |B^T A_i|^2) ~ N(0, 1) for these scales; threshold at the rate's upper quantile.
    std::uniform_real_distribution<double> u(std::log(0.005), std::log(0.5));
    for (int i = 0; i < n_ff; i++) {
        const double rate = std::exp(u(rng));
        double lo = -8, hi = 8;  // upper quantile of N(0, 1) by bisection on erfc
        for (int it = 0; it < 60; it++) {
            const double mid = 0.5 * (lo + hi);
            if (0.5 * std::erfc(mid / std::sqrt(2.0)) > rate) lo = mid;
            else hi = mid;
        }
        t[(size_t)i] = (float)lo;
    }
    PredictorSamples s;
    s.dim = dim, s.n_ff = n_ff;
    s.x.resize((size_t)(a.samples * dim));
    for (float& v : s.x) v = nd(rng);
    std::vector<float> bx((size_t)(a.samples * r0)), z((size_t)(a.samples * n_ff));
    std::vector<float> scratch((size_t)matmul_scratch_floats(1, std::max(dim, r0)));
    matmul(DType::DTYPE_F32, b.data(), s.x.data(), bx.data(), a.samples, r0, dim, scratch.data(), pool);
    matmul(DType::DTYPE_F32, am.data(), bx.data(), z.data(), a.samples, n_ff, r0, scratch.data(), pool);
    s.fired.resize(z.size());
    for (size_t j = 0; j < z.size(); j++) s.fired[j] = z[j] > t[j % (size_t)n_ff];
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    app_fix_blas_kernels();  // the sgemm kernels ember-profile gets on this CPU, not OpenBLAS's generic fallback
    const Args a = parse(argc, argv);
    ThreadPool pool(a.threads);
    const auto t0 = Clock::now();
    const PredictorSamples s = make_samples(a, pool);
    const double q8_ffn = 3.0 * (double)dtype_row_bytes(DType::DTYPE_Q8_0, a.dim) * a.n_ff;  // gate, up, down
    const std::vector<int> ranks = a.ranks.empty() ? predictor_rank_ladder(a.dim, a.n_ff) : a.ranks;
    std::printf("layer dim %d n_ff %d, %lld samples (rule rank %d, made in %.1f s), %d epochs, %d threads, "
                "predictor %s, matmul %s %s\n", a.dim, a.n_ff, (long long)a.samples, a.r0, seconds_since(t0),
                a.epochs, a.threads, dtype_name(a.type), matmul_backend(64), matmul_blas_core());
    std::printf("%6s %9s %9s %13s %8s %8s %8s %11s %13s\n", "rank", "seconds", "cpu.s", "GFLOP/cpu.s", "recall",
                "pred.sp", "true.sp", "pred.MiB", "expect.MiB");
    PredictorTrainArgs args;
    args.epochs = a.epochs;
    args.weight_type = a.type;
    args.batch_size = a.batch;
    args.lr = a.lr;
    const double n_train = (double)a.samples - std::llround((double)a.samples * args.holdout_fraction);
    for (int rank : ranks) {
        args.rank = rank;
        const auto t1 = Clock::now();
        const double c1 = cpu_seconds();
        const PredictorTrainResult r = predictor_train(s, args, pool);
        const double sec = seconds_since(t1), cpu = cpu_seconds() - c1;
        // Forward 2 products, backward 3, each 2 * rank * (dim or n_ff) FLOP per sample.
        const double flop = 2.0 * rank * (2.0 * a.dim + 3.0 * a.n_ff) * n_train * a.epochs;
        std::printf("%6d %9.2f %9.2f %13.1f %8.4f %8.4f %8.4f %11.2f %13.2f\n", rank, sec, cpu, flop / cpu * 1e-9,
                    r.holdout.recall, r.holdout.predicted_sparsity, r.holdout.true_sparsity,
                    r.predictor_bytes / 1048576.0,
                    predictor_expected_bytes(r.predictor_bytes, r.holdout, q8_ffn) / 1048576.0);
    }
    if (a.search) {
        PredictorRankSearch search;
        search.ranks = a.ranks;
        search.ffn_bytes = q8_ffn;
        const auto t1 = Clock::now();
        const double c1 = cpu_seconds();
        const PredictorRankResult r = predictor_train_auto(s, args, search, pool);
        std::printf("search (Q8_0 FFN, %.2f MiB dense): tried", q8_ffn / 1048576.0);
        for (const PredictorRankTrial& t : r.trials) std::printf(" %d (%.1f s)", t.rank, t.seconds);
        std::printf(", chose %d, stopped: %s; %.1f s (%.1f cpu-s) per layer\n", r.best.predictor.rank,
                    r.stop_reason, seconds_since(t1), cpu_seconds() - c1);
    }
    return 0;
}
