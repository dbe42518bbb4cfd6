// ember-gather-bench: how fast the pool reads a sparse FFN layer's gathered rows from DRAM when it does nothing else
// with them, the ceiling of the host's cold-row kernels (kernels-cpu/sparse-ffn.h). Per call: a sorted random list
// of listed neurons (--active-frac of n_ff); in units of --chunks neurons claimed through ThreadPool::parallel_for,
// each unit reads its neurons' gate rows, then the up rows and then the down rows of the ones that fire (--fired,
// of the listed ones), whole rows in list order, the access order of the one-pass sparse FFN. "stream" reads the
// same bytes from one contiguous range in the same number of units. The calls take --layers copies of the layer in
// turn (each holds gate, up and down rows of all n_ff neurons), with another list or range each time a copy comes
// back, so that the rows come from DRAM, not the last-level cache (give it copies of more than that cache). Prints
// per type, chunk size and mode the mean bytes a call read, best and median us, and the median and best of the
// calls' GB/s. Every call counts the bytes its units read; a call that read other than the planned bytes fails the
// run.
//   ember-gather-bench [-t threads] [--shape 7b|13b|70b] [--types f16,q4_0,...] [--active-frac F] [--fired F]
//                      [--chunks N,N,...] [--layers N] [--iters N]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels-cpu/dtype.h"
#include "kernels-cpu/thread-pool.h"
#include "tests/bench/bench-types.h"

using namespace ember;

namespace {

using Clock = std::chrono::steady_clock;

volatile uint64_t g_sink;  // what the reads folded into: kept, so that no load can be dropped

struct Args {
    int threads = 2;
    int64_t dim = 4096, n_ff = 11008;  // --shape 7b (default), 13b or 70b
    std::vector<DType> types = {DType::DTYPE_F16};
    double active_frac = 0.10;
    double fired_frac = 0.5;
    std::vector<int64_t> chunks = {8, 32};
    int layers = 8;
    int iters = 40;
};

[[noreturn]] void usage(const std::string& msg) {
    ember_bench::bench_usage("ember-gather-bench",
                             "[-t threads] [--shape 7b|13b|70b] [--types f16,q4_0,...] [--active-frac F] [--fired F] "
                             "[--chunks N,N,...] [--layers N] [--iters N]",
                             msg);
}

double parse_fraction(const std::string& flag, const std::string& v) {
    char* end = nullptr;
    const double f = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(f > 0.0 && f <= 1.0))
        usage(flag + ": expected a fraction in (0, 1], got '" + v + "'");
    return f;
}

Args parse(int argc, char** argv) {
    Args a;
    for (ember_bench::BenchFlags f(argc, argv, usage); f.next();) {
        const std::string& k = f.flag();
        if (k == "-t" || k == "--threads") {
            a.threads = std::atoi(f.value().c_str());
        } else if (k == "--shape") {
            const std::string v = f.value();
            ember_bench::BenchShape shape;
            if (!ember_bench::bench_parse_shape(v, &shape)) usage("unknown shape '" + v + "', expected 7b, 13b or 70b");
            a.dim = shape.dim, a.n_ff = shape.n_ff;
        } else if (k == "--types") {
            const std::string v = f.value();
            std::string unknown;
            if (!ember_bench::bench_parse_types(v, &a.types, &unknown)) usage("unknown type '" + unknown + "'");
        } else if (k == "--active-frac") {
            a.active_frac = parse_fraction(k, f.value());
        } else if (k == "--fired") {
            a.fired_frac = parse_fraction(k, f.value());
        } else if (k == "--chunks") {
            a.chunks.clear();
            for (const std::string& item : ember_bench::bench_split_list(f.value())) {
                const long long n = std::atoll(item.c_str());
                if (n < 1) usage("--chunks: expected neuron counts >= 1, got '" + item + "'");
                a.chunks.push_back(n);
            }
        } else if (k == "--layers") {
            a.layers = std::atoi(f.value().c_str());
        } else if (k == "--iters") {
            a.iters = std::atoi(f.value().c_str());
        } else {
            usage("unknown flag " + k);
        }
    }
    if (a.threads < 1 || a.iters < 1 || a.layers < 1) usage("-t, --iters and --layers must be >= 1");
    return a;
}

// Reads bytes [p, p + n) (n a multiple of 64, p 64-byte aligned) and folds them into one word.
uint64_t read_bytes(const uint8_t* p, size_t n) {
    const auto* w = reinterpret_cast<const uint64_t*>(p);
    uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < n / 8; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += w[i + k];
    uint64_t s = 0;
    for (uint64_t v : acc) s ^= v;
    return s;
}

// One layer's rows: gate, up and down (the transposed down's neuron rows), n_ff rows each, 64-byte aligned.
struct LayerRows {
    std::vector<uint8_t> bytes;
    size_t row = 0, rows_offset = 0;  // row bytes (rounded up to 64); offset of the first row from bytes.data()
    int64_t n_ff = 0;
    const uint8_t* gate() const { return bytes.data() + rows_offset; }
    const uint8_t* up() const { return gate() + (size_t)n_ff * row; }
    const uint8_t* down() const { return up() + (size_t)n_ff * row; }
};

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse(argc, argv);
    ThreadPool pool(a.threads);
    const int64_t k = std::max<int64_t>(1, (int64_t)(a.active_frac * (double)a.n_ff));
    std::printf("ember-gather-bench: dim %lld, n_ff %lld, %lld neurons listed (%.1f %%), %.0f %% of them firing, "
                "%d threads, %d layer copies, %d calls per case\n",
                (long long)a.dim, (long long)a.n_ff, (long long)k, 100.0 * (double)k / (double)a.n_ff,
                100.0 * a.fired_frac, a.threads, a.layers, a.iters);
    std::printf("%-5s %6s %-7s %9s %9s %10s %9s %9s\n", "type", "chunk", "mode", "MB read", "best us", "median us",
                "GB/s", "best GB/s");

    // Lists: sorted random neurons, and which of them fire (the same draw for every type and chunk size).
    constexpr int kLists = 8;
    std::mt19937 rng(12345);
    std::vector<std::vector<int32_t>> lists(kLists);
    std::vector<std::vector<uint8_t>> fires(kLists);
    std::vector<int64_t> rows_read(kLists, 0);  // per list: its gate rows, and up and down rows of those that fire
    for (int i = 0; i < kLists; i++) {
        std::vector<int32_t> all((size_t)a.n_ff);
        for (int64_t n = 0; n < a.n_ff; n++) all[(size_t)n] = (int32_t)n;
        std::shuffle(all.begin(), all.end(), rng);
        lists[(size_t)i].assign(all.begin(), all.begin() + k);
        std::sort(lists[(size_t)i].begin(), lists[(size_t)i].end());
        std::bernoulli_distribution fire(a.fired_frac);
        for (int64_t j = 0; j < k; j++) fires[(size_t)i].push_back(fire(rng) ? 1 : 0);
        for (uint8_t f : fires[(size_t)i]) rows_read[(size_t)i] += 1 + 2 * f;
    }

    for (DType t : a.types) {
        const size_t row = (dtype_row_bytes(t, a.dim) + 63) / 64 * 64;
        std::vector<LayerRows> layers((size_t)a.layers);
        for (LayerRows& L : layers) {
            L.row = row;
            L.n_ff = a.n_ff;
            L.bytes.resize(3 * (size_t)a.n_ff * row + 64);
            L.rows_offset = (64 - reinterpret_cast<uintptr_t>(L.bytes.data()) % 64) % 64;
            std::memset(L.bytes.data(), 1, L.bytes.size());  // every page present before the timing
        }
        for (int64_t chunk : a.chunks) {
            const int64_t n_units = (k + chunk - 1) / chunk;
            for (const char* mode : {"rows", "stream"}) {
                const bool stream = std::strcmp(mode, "stream") == 0;
                std::vector<double> us, gbs;  // per call: time, and its bytes over its time
                uint64_t sink = 0;
                double mb = 0.0;
                for (int it = 0; it < a.iters + 2; it++) {
                    // The layers in turn, and another list (another range for stream) each time a layer comes
                    // back, so that no call finds the rows of an earlier one in the last-level cache.
                    const LayerRows& L = layers[(size_t)(it % a.layers)];
                    const int visit = it / a.layers;
                    const std::vector<int32_t>& list = lists[(size_t)(visit % kLists)];
                    const std::vector<uint8_t>& fire = fires[(size_t)(visit % kLists)];
                    const size_t planned_bytes = (size_t)rows_read[(size_t)(visit % kLists)] * row;
                    // stream: the planned bytes in n_units units of whole cache lines (the last takes the rest).
                    const size_t unit_bytes = planned_bytes / (size_t)n_units / 64 * 64;
                    const size_t span = 3 * (size_t)a.n_ff * row - planned_bytes;  // stream: where a range may start
                    const uint8_t* from = L.gate() + (span == 0 ? 0 : (size_t)visit * planned_bytes % span / 64 * 64);
                    std::atomic<uint64_t> read{0}, folded{0};
                    const auto t0 = Clock::now();
                    pool.parallel_for(n_units, 1, [&](int64_t u0, int64_t u1) {
                        uint64_t s = 0, n = 0;
                        for (int64_t u = u0; u < u1; u++) {
                            if (stream) {
                                const size_t b = (size_t)u * unit_bytes;
                                const size_t e = u + 1 == n_units ? planned_bytes : b + unit_bytes;
                                s ^= read_bytes(from + b, e - b);
                                n += e - b;
                                continue;
                            }
                            const int64_t j0 = u * chunk, j1 = std::min(j0 + chunk, k);
                            for (int64_t j = j0; j < j1; j++)
                                s ^= read_bytes(L.gate() + (size_t)list[(size_t)j] * row, row);
                            n += (size_t)(j1 - j0) * row;
                            for (const uint8_t* base : {L.up(), L.down()}) {
                                for (int64_t j = j0; j < j1; j++) {
                                    if (!fire[(size_t)j]) continue;
                                    s ^= read_bytes(base + (size_t)list[(size_t)j] * row, row);
                                    n += row;
                                }
                            }
                        }
                        read.fetch_add(n, std::memory_order_relaxed);
                        folded.fetch_xor(s, std::memory_order_relaxed);
                    });
                    const double t_us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
                    if (read.load() != planned_bytes) {
                        std::printf("FAIL: %s chunk %lld %s read %llu bytes, planned %zu\n", dtype_name(t),
                                    (long long)chunk, mode, (unsigned long long)read.load(), planned_bytes);
                        return 1;
                    }
                    sink ^= folded.load();
                    if (it >= 2) {  // the first calls wake the workers up
                        us.push_back(t_us);
                        gbs.push_back((double)planned_bytes / t_us / 1e3);
                        mb += (double)planned_bytes / 1e6 / a.iters;
                    }
                }
                std::printf("%-5s %6lld %-7s %9.2f %9.1f %10.1f %9.1f %9.1f\n", dtype_name(t), (long long)chunk, mode,
                            mb, *std::min_element(us.begin(), us.end()), ember_bench::bench_median(us),
                            ember_bench::bench_median(gbs), *std::max_element(gbs.begin(), gbs.end()));
                g_sink = g_sink ^ sink;
            }
        }
    }
    return 0;
}
