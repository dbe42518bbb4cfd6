// ember-kernel-bench: matvec GB/s per weight type at 7B shapes next to this machine's measured read bandwidth,
// and matmul GFLOP/s for a token batch. Every result is first checked against matmul_ref (exit 1 if wrong).
//   ember-kernel-bench [-t threads] [-s seconds per case] [--types f32,f16,bf16,q8_0,q4_0] [--shape ROWSxCOLS]...
//                      [--tokens N] [--no-matmul] [--isa avx512vnni|avx512|avx2|scalar] [--peak-mib N] [--cycle-mib N]
//                      [--prefetch l1|l2]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/quant.h"
#include "kernels-cpu/thread-pool.h"
#include "tests/bench/bench-types.h"

using namespace ember;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Args {
    int threads = (int)std::max(1u, std::thread::hardware_concurrency());
    double seconds = 0.25;  // timing per matvec case
    std::vector<DType> types = {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_BF16, DType::DTYPE_Q8_0,
                                DType::DTYPE_Q4_0};
    std::vector<std::pair<int64_t, int64_t>> shapes;  // (rows, cols); default: 7B ffn_up and ffn_down
    int64_t tokens = 512;
    bool matmul = true;
    std::string isa;
    int64_t peak_mib = 1024;   // buffer for the read-bandwidth measurement
    int64_t cycle_mib = 384;   // matvec cycles through copies of the matrix totalling at least this (> L3)
};

[[noreturn]] void usage(const std::string& msg) {
    ember_bench::bench_usage("ember-kernel-bench",
                             "[-t threads] [-s seconds] [--types f32,f16,...] [--shape ROWSxCOLS] [--tokens N] "
                             "[--no-matmul] [--isa avx512vnni|avx512|avx2|scalar] [--peak-mib N] [--cycle-mib N] "
                             "[--prefetch l1|l2]",
                             msg);
}

Args parse(int argc, char** argv) {
    Args a;
    for (ember_bench::BenchFlags f(argc, argv, usage); f.next();) {
        const std::string& k = f.flag();
        auto val = [&] { return f.value(); };
        if (k == "-t") {
            a.threads = std::atoi(val().c_str());
        } else if (k == "-s") {
            a.seconds = std::atof(val().c_str());
        } else if (k == "--types") {
            std::string unknown;
            if (!ember_bench::bench_parse_types(val(), &a.types, &unknown))
                usage(("unknown type '" + unknown + "'").c_str());
        } else if (k == "--shape") {
            const std::string v = val();
            const size_t x = v.find('x');
            if (x == std::string::npos) usage("--shape wants ROWSxCOLS");
            a.shapes.emplace_back(std::atoll(v.substr(0, x).c_str()), std::atoll(v.substr(x + 1).c_str()));
        } else if (k == "--tokens") {
            a.tokens = std::atoll(val().c_str());
        } else if (k == "--no-matmul") {
            a.matmul = false;
        } else if (k == "--isa") {
            a.isa = val();
        } else if (k == "--prefetch") {
            const std::string v = val();
            if (!ember_bench::bench_set_prefetch(v)) usage(("--prefetch: expected l1 or l2, got '" + v + "'").c_str());
        } else if (k == "--peak-mib") {
            a.peak_mib = std::atoll(val().c_str());
        } else if (k == "--cycle-mib") {
            a.cycle_mib = std::atoll(val().c_str());
        } else {
            usage(("unknown flag " + k).c_str());
        }
    }
    if (a.threads < 1) usage("-t must be >= 1");
    if (a.shapes.empty()) a.shapes = {{11008, 4096}, {4096, 11008}};
    return a;
}

// Page-aligned, first touched by the pool's threads (so pages spread like the weights of a real run would).
struct Buffer {
    uint8_t* p = nullptr;
    size_t n = 0;
    Buffer(size_t bytes, ThreadPool& pool) : n(bytes) {
        p = (uint8_t*)std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
        if (!p) throw std::runtime_error("out of memory allocating " + std::to_string(bytes) + " bytes");
        pool.parallel_for((int64_t)((bytes + 4095) / 4096), 64, [&](int64_t b, int64_t e) {
            std::memset(p + b * 4096, 0, std::min(bytes, (size_t)e * 4096) - (size_t)b * 4096);
        });
    }
    ~Buffer() { std::free(p); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
};

// Peak read bandwidth: threads sum 64-bit words of a large buffer (plain C++: the compiler vectorizes the integer
// sums, far faster than memory; four interleaved streams per thread with prefetch, the access pattern of matvec's
// four rows). Timed per 64 MiB segment, about one matvec call; segments are visited in turn, so none is in cache.
// The bench samples a segment before every timed matvec call too: on a shared machine the best samples of both
// come from the moments when all cores are free, and their ratio compares like with like.
struct PeakMeter {
    static constexpr size_t kSegBytes = (size_t)64 << 20;
    Buffer buf;
    ThreadPool& pool;
    int64_t n_seg, next = 0;
    double best = 0.0;
    std::vector<uint64_t> part = std::vector<uint64_t>(4096, 0);

    PeakMeter(ThreadPool& p, int64_t mib)
        : buf(std::max<size_t>(kSegBytes, (size_t)mib << 20) / kSegBytes * kSegBytes, p), pool(p),
          n_seg((int64_t)(buf.n / kSegBytes)) {
        for (size_t i = 0; i < buf.n / 8; i += 512) ((uint64_t*)buf.p)[i] = i;  // not all zero pages
    }
    double sample() {  // GB/s of one segment
        const uint64_t* w = (const uint64_t*)(buf.p + (size_t)(next++ % n_seg) * kSegBytes);
        const auto t0 = Clock::now();
        pool.parallel_for((int64_t)(kSegBytes / 2048), 1, [&](int64_t b, int64_t e) {  // units of 2 KiB
            const uint64_t* base = w + b * 256;
            const int64_t len = (e - b) * 256 / 4;  // words per stream, a multiple of 64
            uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t i = 0; i < len; i += 8) {
                for (int st = 0; st < 4; st++) {
                    const uint64_t* q = base + st * len + i;
                    __builtin_prefetch(q + 128);  // 1 KiB ahead
                    for (int k = 0; k < 8; k++) acc[k] += q[k];
                }
            }
            part[(size_t)b % part.size()] += acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7];
        });
        const double gbs = (double)kSegBytes / seconds_since(t0) / 1e9;
        best = std::max(best, gbs);
        return gbs;
    }
};

uint64_t rng_state = 0x853c49e6748fea9bull;
float rand_float() {  // roughly normal: sum of three uniforms in [-1, 1]
    auto u = [] {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return (float)(rng_state >> 40) * (2.0f / 16777216.0f) - 1.0f;
    };
    return u() + u() + u();
}

std::vector<float> rand_vec(int64_t n) {
    std::vector<float> v((size_t)n);
    for (auto& x : v) x = rand_float();
    return v;
}

// Checks y against matmul_ref for the given tokens: |y - ref| <= tol * sum |w x|, where ref uses the
// activations the kernel saw (x through Q8_0 and back for the quantized dot path).
bool check(const char* what, DType t, const uint8_t* w, const float* x_seen, const float* y, int64_t tokens,
           int64_t rows, int64_t cols) {
    std::vector<float> ref((size_t)(tokens * rows));
    matmul_ref(t, w, x_seen, ref.data(), tokens, rows, cols);
    const size_t rb = dtype_row_bytes(t, cols);
    std::vector<float> wf((size_t)cols);
    double worst = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        dot_kernels_portable()->dequantize_row(t, w + r * rb, wf.data(), cols);
        for (int64_t k = 0; k < tokens; k++) {
            double s = 0.0;
            for (int64_t c = 0; c < cols; c++) s += std::fabs((double)wf[c] * x_seen[k * cols + c]);
            const double err = std::fabs((double)y[k * rows + r] - ref[k * rows + r]) / (s > 0 ? s : 1.0);
            worst = std::max(worst, err);
        }
    }
    const double tol = 2e-5;
    if (!(worst <= tol)) {
        std::printf("FAIL %s %s %lldx%lld: max |y - ref| / sum|w x| = %.3g > %.1g\n", what, dtype_name(t),
                    (long long)rows, (long long)cols, worst, tol);
        return false;
    }
    return true;
}

// The activations as the kernel sees them.
std::vector<float> seen_by_kernel(DType t, const std::vector<float>& x, int64_t tokens, int64_t cols, bool quantized) {
    if (!quantized) return x;
    std::vector<float> out(x.size());
    std::vector<uint8_t> q(dot_vec_bytes(t, cols));
    for (int64_t k = 0; k < tokens; k++) {
        quantize_row(DType::DTYPE_Q8_0, x.data() + k * cols, q.data(), cols);
        dequantize_row(DType::DTYPE_Q8_0, q.data(), out.data() + k * cols, cols);
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    const Args args = parse(argc, argv);
    try {
        if (!args.isa.empty()) dot_force_simd_level(args.isa.c_str());
        ThreadPool pool(args.threads);
        std::printf("ember-kernel-bench: %d threads, SIMD %s (prefetch to %s), matmul backend %s (%lld tokens), %u "
                    "hardware threads\n",
                    args.threads, dot_simd_level(), dot_prefetch_level_name(), matmul_backend(args.tokens),
                    (long long)args.tokens, std::thread::hardware_concurrency());

        PeakMeter peak(pool, args.peak_mib);
        for (int64_t i = 0; i < 2 * peak.n_seg; i++) peak.sample();

        bool ok = true;
        struct Row {
            std::string label;
            double mib;
            int copies;
            double med, best, peak_best;
        };
        std::vector<Row> table;
        for (auto [rows, cols] : args.shapes) {
            for (DType t : args.types) {
                const size_t rb = dtype_row_bytes(t, cols);
                const size_t mbytes = rb * rows;
                const int copies = (int)std::max<int64_t>(1, ((args.cycle_mib << 20) + (int64_t)mbytes - 1) / (int64_t)mbytes);
                Buffer w(mbytes * copies, pool);
                {  // random weights, quantized per row in parallel (64 distinct rows, then every 64th row redrawn)
                    std::vector<std::vector<float>> rowsrc(64);
                    for (auto& v : rowsrc) v = rand_vec(cols);
                    pool.parallel_for(rows, 16, [&](int64_t b, int64_t e) {
                        for (int64_t r = b; r < e; r++) quantize_row(t, rowsrc[r % 64].data(), w.p + r * rb, cols);
                    });
                    for (int64_t r = 0; r < rows; r += 64) {
                        std::vector<float> v = rand_vec(cols);
                        quantize_row(t, v.data(), w.p + r * rb, cols);
                    }
                    // Copies differ in one byte per cache line (a low mantissa or quant byte), so that no
                    // layer of the memory system can share or dedupe their pages.
                    for (int c = 1; c < copies; c++) {
                        uint8_t* dst = w.p + c * mbytes;
                        std::memcpy(dst, w.p, mbytes);
                        for (size_t o = 62; o < mbytes; o += 64) dst[o] ^= (uint8_t)(c & 0x3f);
                    }
                }
                const std::vector<float> x = rand_vec(cols);
                std::vector<uint8_t> xq(dot_vec_bytes(t, cols));
                dot_prepare_vec(t, x.data(), xq.data(), cols);
                std::vector<float> y((size_t)rows);
                matvec(t, w.p, xq.data(), y.data(), rows, cols, pool);
                const bool quantized = dot_vec_type(t) == DType::DTYPE_Q8_0;
                const std::vector<float> xs = seen_by_kernel(t, x, 1, cols, quantized);
                if (!check("matvec", t, w.p, xs.data(), y.data(), 1, rows, cols)) {
                    ok = false;
                    continue;
                }
                std::vector<double> times;
                double local_peak = 0.0;
                const auto t_all = Clock::now();
                for (int it = 0; it < 5 || seconds_since(t_all) < args.seconds; it++) {
                    local_peak = std::max(local_peak, peak.sample());
                    const auto t0 = Clock::now();
                    matvec(t, w.p + (size_t)(it % copies) * mbytes, xq.data(), y.data(), rows, cols, pool);
                    times.push_back(seconds_since(t0));
                }
                std::sort(times.begin(), times.end());
                char label[64];
                std::snprintf(label, sizeof label, "%s %lldx%lld", dtype_name(t), (long long)rows, (long long)cols);
                table.push_back({label, mbytes / 1048576.0, copies, times[times.size() / 2], times[0], local_peak});
            }
        }
        std::printf("peak read bandwidth (streaming sum, best 64 MiB segment, %d threads): %.1f GB/s\n\n",
                    args.threads, peak.best);
        std::printf("matvec                        MiB copies  median us    best us  GB/s(med) GB/s(best)  "
                    "best/peak  (peak while timing)\n");
        for (const Row& r : table) {
            const double bytes = r.mib * 1048576.0;
            std::printf("%-26s %7.1f %6d %10.1f %10.1f %10.1f %10.1f %9.0f%%  (%.1f GB/s)\n", r.label.c_str(), r.mib,
                        r.copies, r.med * 1e6, r.best * 1e6, bytes / r.med / 1e9, bytes / r.best / 1e9,
                        100.0 * bytes / r.best / 1e9 / peak.best, r.peak_best);
        }

        if (args.matmul && args.tokens > 0) {
            const int64_t rows = args.shapes[0].first, cols = args.shapes[0].second, T = args.tokens;
            std::printf("\nmatmul %lld tokens x %lldx%lld (%s)     best ms   GFLOP/s\n", (long long)T, (long long)rows,
                        (long long)cols, matmul_backend(T));
            const std::vector<float> x = rand_vec(T * cols);
            std::vector<float> y((size_t)(T * rows));
            std::vector<float> scratch((size_t)matmul_scratch_floats(rows, cols));
            for (DType t : args.types) {
                const size_t rb = dtype_row_bytes(t, cols);
                Buffer w(rb * rows, pool);
                for (int64_t r = 0; r < rows; r++) {
                    const std::vector<float> v = rand_vec(cols);
                    quantize_row(t, v.data(), w.p + r * rb, cols);
                }
                std::vector<double> times;
                for (int it = 0; it < 2; it++) {
                    const auto t0 = Clock::now();
                    matmul(t, w.p, x.data(), y.data(), T, rows, cols, scratch.data(), pool);
                    times.push_back(seconds_since(t0));
                }
                // check the first and the last token against the reference
                const bool quantized = std::string(matmul_backend(T)) == "dot" && dot_vec_type(t) == DType::DTYPE_Q8_0;
                std::vector<float> x2(x.begin(), x.begin() + cols), y2((size_t)(2 * rows));
                x2.insert(x2.end(), x.end() - cols, x.end());
                for (int64_t r = 0; r < rows; r++) {
                    y2[r] = y[r];
                    y2[rows + r] = y[(T - 1) * rows + r];
                }
                const std::vector<float> xs = seen_by_kernel(t, x2, 2, cols, quantized);
                if (!check("matmul", t, w.p, xs.data(), y2.data(), 2, rows, cols)) ok = false;
                std::sort(times.begin(), times.end());
                const double best = times[0];  // of 2 runs (the first includes warm-up)
                std::printf("  %-36s %9.1f %9.1f\n", dtype_name(t), best * 1e3, 2.0 * T * rows * cols / best / 1e9);
            }
        }
        if (!ok) {
            std::printf("\nFAILED: results differ from matmul_ref\n");
            return 1;
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ember-kernel-bench: %s\n", e.what());
        return 1;
    }
}
