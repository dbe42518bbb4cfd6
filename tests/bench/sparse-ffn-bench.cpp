// ember-sparse-ffn-bench: one FFN layer of a 7B shape (dim 4096, n_ff 11008; or --shape 13b, 70b) per weight type,
// with random active sets (10% of the neurons, and 100% as a control). Checks sparse_gate_up / sparse_down and the
// fused sparse_ffn against their references (exit 1 if wrong), then prints time per call and GB/s of the weight rows
// actually read (k gate rows, and the up and down rows of the neurons that fire: every listed one under SiLU, the
// default, about half under --act relu, as in a ReLU model's split layer) next to this machine's streaming read
// bandwidth, the dense FFN (three matvecs) for comparison, and the load-time cost of sparse_down_transpose. Ops:
// gate+up, down, ffn (the two calls one after the other), fused (sparse_ffn: the same work in one pass over the pool),
// and batch (sparse_ffn_batch: --batch-tokens tokens, each with its own random list at the active fraction, as a
// prompt's batch; GB/s of the rows the union reads, and the time per token).
// Every timed call is preceded by one 64 MiB bandwidth sample: it evicts the last-level cache (a layer's active
// rows, 27 MB for F16, would otherwise stay cached between calls as they never do in a 32-layer decode) and gives
// the peak measured at the same moment. Each call also takes the next of 8 different active lists. A last-level
// cache larger than the sample still holds part of the layer: --layers N gives the sparse and dense calls N copies
// of the layer's weights at different addresses, taken in turn, so that their rows come from DRAM as in a model.
// --warm drops the samples between calls (the peak column gives the samples taken at start): with --layers 1 the
// lists' rows then stay in the caches, and the times show what the kernels and the pool cost without DRAM.
//   ember-sparse-ffn-bench [--threads N] [--types f32,f16,bf16,q8_0,q4_0] [--active-frac F]... [--iters N]
//                          [--isa avx512vnni|avx512|avx2|scalar] [--ops gate+up,down,ffn,fused,batch] [--no-dense]
//                          [--layers N] [--batch-tokens N] [--shape 7b|13b|70b] [--prefetch l1|l2] [--act silu|relu]
//                          [--warm]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/quant.h"
#include "kernels-cpu/sparse-ffn-batch.h"
#include "kernels-cpu/sparse-ffn.h"
#include "tests/bench/bench-types.h"

using namespace ember;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr int kLists = 8;  // active lists cycled through by the timed calls

struct Args {
    int64_t dim = 4096, n_ff = 11008;  // --shape 7b (default), 13b or 70b
    int threads = 2;
    int iters = 30;
    std::vector<DType> types = {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_BF16, DType::DTYPE_Q8_0,
                                DType::DTYPE_Q4_0};
    std::vector<double> fracs;  // default {0.10, 1.00}
    std::string isa;
    std::string ops = "gate+up,down,ffn,fused,batch";  // which sparse timings to print
    bool dense = true;
    bool warm = false;  // no bandwidth sample (cache eviction) between timed calls
    int layers = 1;  // copies of the layer the sparse calls cycle through
    int batch_tokens = 32;
    SparseAct act = SparseAct::SPARSE_ACT_SILU;  // --act: relu reads the up and down rows of positive gates only
};

[[noreturn]] void usage(const std::string& msg) {
    ember_bench::bench_usage("ember-sparse-ffn-bench",
                             "[--threads N] [--types f32,f16,...] [--active-frac F]... [--iters N] "
                             "[--isa avx512vnni|avx512|avx2|scalar] [--ops gate+up,down,ffn,fused,batch] "
                             "[--no-dense] [--layers N] [--batch-tokens N] [--shape 7b|13b|70b] [--prefetch l1|l2] "
                             "[--act silu|relu] [--warm]",
                             msg);
}

Args parse(int argc, char** argv) {
    Args a;
    for (ember_bench::BenchFlags f(argc, argv, usage); f.next();) {
        const std::string& k = f.flag();
        auto val = [&] { return f.value(); };
        if (k == "--threads") {
            a.threads = std::atoi(val().c_str());
        } else if (k == "--iters") {
            a.iters = std::atoi(val().c_str());
        } else if (k == "--active-frac") {
            a.fracs.push_back(std::atof(val().c_str()));
        } else if (k == "--isa") {
            a.isa = val();
        } else if (k == "--prefetch") {
            const std::string v = val();
            if (!ember_bench::bench_set_prefetch(v)) usage("--prefetch: expected l1 or l2, got '" + v + "'");
        } else if (k == "--ops") {
            a.ops = val();
        } else if (k == "--batch-tokens") {
            a.batch_tokens = std::atoi(val().c_str());
        } else if (k == "--layers") {
            a.layers = std::atoi(val().c_str());
        } else if (k == "--shape") {
            const std::string v = val();
            ember_bench::BenchShape shape;
            if (!ember_bench::bench_parse_shape(v, &shape)) usage("unknown shape '" + v + "', expected 7b, 13b or 70b");
            a.dim = shape.dim, a.n_ff = shape.n_ff;
        } else if (k == "--act") {
            const std::string v = val();
            if (v != "silu" && v != "relu") usage("--act: expected silu or relu, got '" + v + "'");
            a.act = v == "relu" ? SparseAct::SPARSE_ACT_RELU : SparseAct::SPARSE_ACT_SILU;
        } else if (k == "--warm") {
            a.warm = true;
        } else if (k == "--no-dense") {
            a.dense = false;
        } else if (k == "--types") {
            std::string unknown;
            if (!ember_bench::bench_parse_types(val(), &a.types, &unknown)) usage("unknown type '" + unknown + "'");
        } else {
            usage("unknown flag " + k);
        }
    }
    if (a.threads < 1 || a.iters < 1 || a.layers < 1) usage("--threads, --iters and --layers must be >= 1");
    if (a.batch_tokens < 1 || a.batch_tokens > kSparseBatchMaxTokens) usage("--batch-tokens must be in [1, 32]");
    if (a.fracs.empty()) a.fracs = {0.10, 1.00};
    for (double f : a.fracs)
        if (!(f > 0.0 && f <= 1.0)) usage("--active-frac must be in (0, 1]");
    return a;
}

// Streaming read bandwidth: threads sum 64-bit words of 64 MiB segments of a 1 GiB buffer, four interleaved streams
// per thread with prefetch; segments are visited in turn, so that a segment has left even a 300 MB last-level cache
// before it is read again (a smaller buffer measured the cache, not DRAM, on such machines).
struct PeakMeter {
    static constexpr size_t kSegBytes = (size_t)64 << 20;
    static constexpr int kSegs = 16;
    std::vector<uint64_t> buf = std::vector<uint64_t>(kSegs * kSegBytes / 8);
    ThreadPool& pool;
    int next = 0;
    double best = 0.0;
    uint64_t sink = 0;

    explicit PeakMeter(ThreadPool& p) : pool(p) {
        for (size_t i = 0; i < buf.size(); i += 512) buf[i] = i;  // not all zero pages
    }
    double sample() {
        const uint64_t* w = buf.data() + (size_t)(next++ % kSegs) * (kSegBytes / 8);
        std::vector<uint64_t> part((size_t)pool.size() * 64, 0);
        const auto t0 = Clock::now();
        pool.parallel_for((int64_t)(kSegBytes / 2048), 1, [&](int64_t b, int64_t e) {  // units of 2 KiB
            const uint64_t* base = w + b * 256;
            const int64_t len = (e - b) * 256 / 4;  // words per stream
            uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t i = 0; i < len; i += 8) {
                for (int st = 0; st < 4; st++) {
                    const uint64_t* q = base + st * len + i;
                    __builtin_prefetch(q + 128);
                    for (int k = 0; k < 8; k++) acc[k] += q[k];
                }
            }
            uint64_t sum = 0;
            for (uint64_t v : acc) sum += v;
            part[(size_t)(b % (int64_t)part.size())] += sum;
        });
        const double gbs = (double)kSegBytes / seconds_since(t0) / 1e9;
        sink += std::accumulate(part.begin(), part.end(), (uint64_t)0);
        best = std::max(best, gbs);
        return gbs;
    }
};

// rows x cols random values (roughly normal, std `scale`) stored as type t; rows generated in parallel.
std::vector<uint8_t> random_matrix(DType t, int64_t rows, int64_t cols, float scale, uint64_t seed, ThreadPool& pool) {
    const size_t rb = dtype_row_bytes(t, cols);
    std::vector<uint8_t> m(rb * rows);
    pool.parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
        std::vector<float> v((size_t)cols);
        for (int64_t r = r0; r < r1; r++) {
            uint64_t s = (seed * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)r * 0xBF58476D1CE4E5B9ull) ^ 0x94D049BB133111EBull;
            auto u = [&] {  // xorshift64, uniform in [-1, 1)
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                return (float)(s >> 40) * (2.0f / 16777216.0f) - 1.0f;
            };
            for (auto& f : v) f = (u() + u() + u()) * scale;  // variance 1 * scale^2
            quantize_row(t, v.data(), m.data() + r * rb, cols);
        }
    });
    return m;
}

}  // namespace

int main(int argc, char** argv) {
    const Args args = parse(argc, argv);
    try {
        if (!args.isa.empty()) dot_force_simd_level(args.isa.c_str());
        ThreadPool pool(args.threads);
        PeakMeter peak(pool);
        for (int i = 0; i < 2 * PeakMeter::kSegs; i++) peak.sample();
        std::printf("ember-sparse-ffn-bench: dim %lld n_ff %lld, %d threads, simd %s (prefetch to %s)\n",
                    (long long)args.dim, (long long)args.n_ff, args.threads, dot_simd_level(),
                    dot_prefetch_level_name());
        std::printf("%-5s %7s %-9s %9s %9s %8s %8s %7s %9s\n", "type", "active", "op", "best ms", "median ms",
                    "MB read", "GB/s", "of peak", "peak GB/s");
        bool ok = true;
        std::mt19937 rng(42);
        for (DType wt : args.types) {
            const size_t rb = dtype_row_bytes(wt, args.dim);
            const float s_in = 1.0f / std::sqrt((float)args.dim), s_out = 1.0f / std::sqrt((float)args.n_ff);
            const auto gate = random_matrix(wt, args.n_ff, args.dim, s_in, 1, pool);
            const auto up = random_matrix(wt, args.n_ff, args.dim, s_in, 2, pool);
            const auto down = random_matrix(wt, args.dim, args.n_ff, s_out, 3, pool);  // ggml layout (dim, n_ff)
            std::vector<uint8_t> down_t(rb * args.n_ff);
            double tr_s = 1e30;  // best of 3
            for (int it = 0; it < 3; it++) {
                const auto t_tr = Clock::now();
                sparse_down_transpose(wt, down.data(), wt, down_t.data(), args.dim, args.n_ff, pool);
                tr_s = std::min(tr_s, seconds_since(t_tr));
            }

            // Copies 1.. of the layer (copy 0 is the original) for the timed sparse calls.
            std::vector<std::vector<uint8_t>> gate_c(args.layers - 1, gate), up_c(args.layers - 1, up),
                down_c(args.layers - 1, down_t);
            auto layer_w = [&](int c, const std::vector<uint8_t>& w0, const std::vector<std::vector<uint8_t>>& wc) {
                return c == 0 ? w0.data() : wc[(size_t)c - 1].data();
            };

            const int nt = args.batch_tokens;
            std::vector<float> x((size_t)args.dim * nt);
            std::normal_distribution<float> nd(0.0f, 1.0f);
            for (auto& f : x) f = nd(rng);
            const size_t xq_stride = dot_vec_bytes(wt, args.dim);
            std::vector<uint8_t> xq(xq_stride *
                                    nt);  // token t's prepared vector at t * xq_stride; token 0 for the rest
            for (int t = 0; t < nt; t++)
                dot_prepare_vec(wt, x.data() + (size_t)t * args.dim, xq.data() + t * xq_stride, args.dim);
            // SiLU: every listed neuron reads its three rows; ReLU skips the up and down rows of negative gates.
            const SparseGateUpWeights w{wt, gate.data(), up.data(), args.dim, args.act};

            for (double frac : args.fracs) {
                const int64_t k = std::max<int64_t>(1, std::llround(frac * args.n_ff));
                std::vector<std::vector<int32_t>> lists(kLists);
                std::vector<int32_t> all(args.n_ff);
                std::iota(all.begin(), all.end(), 0);
                for (auto& l : lists) {  // k distinct neurons, ascending, as the predictor gives them
                    std::shuffle(all.begin(), all.end(), rng);
                    l.assign(all.begin(), all.begin() + k);
                    std::sort(l.begin(), l.end());
                }
                std::vector<float> h((size_t)k), h_ref((size_t)k), y((size_t)args.dim), y_ref((size_t)args.dim);
                std::vector<float> hf((size_t)k), yf((size_t)args.dim),
                    partials(sparse_ffn_scratch_floats(k, args.dim)),
                    down_partials(sparse_down_scratch_floats(k, args.dim));
                {  // correctness first, on list 0
                    const int32_t* a = lists[0].data();
                    sparse_gate_up(w, xq.data(), a, k, h.data(), pool);
                    sparse_down(wt, down_t.data(), h.data(), a, k, y.data(), args.dim, down_partials.data(), pool);
                    sparse_gate_up_ref(w, xq.data(), a, k, h_ref.data());
                    sparse_down_ref(wt, down_t.data(), h.data(), a, k, y_ref.data(), args.dim);
                    sparse_ffn(w, xq.data(), wt, down_t.data(), a, k, hf.data(), yf.data(), partials.data(), pool);
                    double eh = 0.0, ey = 0.0, sh = 0.0, sy = 0.0;
                    for (int64_t j = 0; j < k; j++) {
                        eh = std::max({eh, (double)std::fabs(h[j] - h_ref[j]), (double)std::fabs(hf[j] - h_ref[j])});
                        sh = std::max(sh, (double)std::fabs(h_ref[j]));
                    }
                    for (int64_t c = 0; c < args.dim; c++) {
                        ey = std::max({ey, (double)std::fabs(y[c] - y_ref[c]), (double)std::fabs(yf[c] - y_ref[c])});
                        sy = std::max(sy, (double)std::fabs(y_ref[c]));
                    }
                    // Float sums of 4096 (dot) or k (axpy) terms against double references.
                    if (!(eh <= 1e-4 * std::max(1.0, sh)) || !(ey <= 1e-4 * std::max(1.0, sy))) {
                        std::printf("FAIL %s %.0f%%: max |h - ref| %.3g (|h| %.3g), max |y - ref| %.3g (|y| %.3g)\n",
                                    dtype_name(wt), 100 * frac, eh, sh, ey, sy);
                        ok = false;
                        continue;
                    }
                }
                // Each list's h (down takes its own list's) and how many of its neurons fire: the up and down rows
                // read per call are the mean over the lists (every listed neuron under SiLU).
                std::vector<std::vector<float>> h_of(kLists, std::vector<float>((size_t)k));
                double fired = 0.0;
                for (int i = 0; i < kLists; i++) {
                    sparse_gate_up(w, xq.data(), lists[(size_t)i].data(), k, h_of[(size_t)i].data(), pool);
                    fired += (double)std::count_if(h_of[(size_t)i].begin(), h_of[(size_t)i].end(),
                                                   [](float v) { return v != 0.0f; });
                }
                fired /= kLists;
                auto h_for = [&](const int32_t* a) {  // the h of list a
                    for (int i = 0; i < kLists; i++)
                        if (lists[(size_t)i].data() == a) return h_of[(size_t)i].data();
                    return h.data();
                };
                // Times fn over the iterations: GB/s of `bytes` (the weights the call reads), `note` after the row.
                auto time_bytes = [&](const std::string& op, const std::string& name, double bytes,
                                      const std::string& note, auto fn) {
                    if (("," + args.ops + ",").find("," + op + ",") == std::string::npos) return 0.0;
                    std::vector<double> ts;
                    double pk = 0.0;
                    for (int it = 0; it < args.iters; it++) {
                        pk = args.warm ? peak.best : std::max(pk, peak.sample());
                        const int c = it % args.layers;
                        const SparseGateUpWeights wc{wt, layer_w(c, gate, gate_c), layer_w(c, up, up_c), args.dim,
                                                     args.act};
                        const uint8_t* dc = layer_w(c, down_t, down_c);
                        const auto t0 = Clock::now();
                        fn(lists[(size_t)(it % kLists)].data(), wc, dc);
                        ts.push_back(seconds_since(t0));
                    }
                    const double best = *std::min_element(ts.begin(), ts.end());
                    std::printf("%-5s %6.1f%% %-9s %9.3f %9.3f %8.1f %8.2f %6.0f%% %9.1f%s\n", dtype_name(wt),
                                100.0 * k / args.n_ff, name.c_str(), best * 1e3,
                                ember_bench::bench_median(ts) * 1e3, bytes / 1e6,
                                bytes / best / 1e9, 100.0 * bytes / best / 1e9 / pk, pk,
                                note.empty() ? "" : ("  " + note).c_str());
                    return best;
                };
                auto time = [&](const std::string& op, double rows_read, auto fn) {
                    time_bytes(op, op, rows_read * (double)rb, "", fn);
                };
                using W = const SparseGateUpWeights&;
                time("gate+up", k + fired, [&](const int32_t* a, W wc, const uint8_t*) {
                    sparse_gate_up(wc, xq.data(), a, k, h.data(), pool);
                });
                time("down", fired, [&](const int32_t* a, W, const uint8_t* dc) {
                    sparse_down(wt, dc, h_for(a), a, k, y.data(), args.dim, down_partials.data(), pool);
                });
                time("ffn", k + 2.0 * fired, [&](const int32_t* a, W wc, const uint8_t* dc) {
                    sparse_gate_up(wc, xq.data(), a, k, h.data(), pool);
                    sparse_down(wt, dc, h.data(), a, k, y.data(), args.dim, down_partials.data(), pool);
                });
                time("fused", k + 2.0 * fired, [&](const int32_t* a, W wc, const uint8_t* dc) {
                    sparse_ffn(wc, xq.data(), wt, dc, a, k, h.data(), y.data(), partials.data(), pool);
                });
                // A batch: token t takes list (t mod 8) shuffled against the others by an offset, so the tokens'
                // sets differ; merged into one ascending list with token masks, as a prompt's split layer does.
                std::vector<uint32_t> mask_of(args.n_ff, 0);
                for (int t = 0; t < nt; t++)
                    for (int32_t i : lists[(size_t)(t % kLists)])
                        mask_of[(size_t)((i + 97 * (t / kLists)) % args.n_ff)] |= 1u << t;
                std::vector<int32_t> rows;
                std::vector<uint32_t> masks;
                for (int64_t i = 0; i < args.n_ff; i++)
                    if (mask_of[i]) rows.push_back((int32_t)i), masks.push_back(mask_of[i]);
                const int64_t kb = (int64_t)rows.size();
                std::vector<float> hb((size_t)kb * nt), yb((size_t)args.dim * nt);
                const std::string batch_op = "batch" + std::to_string(nt);
                // Rows read: every union row's gate, the up and down rows of those that fire for any token.
                sparse_ffn_batch(w, xq.data(), xq_stride, nt, wt, down_t.data(), rows.data(), masks.data(), kb,
                                 hb.data(), yb.data(), pool);
                int64_t fired_any = 0;
                for (int64_t j = 0; j < kb; j++)
                    fired_any += std::any_of(hb.begin() + j * nt, hb.begin() + (j + 1) * nt,
                                             [](float v) { return v != 0.0f; });
                char note[96];
                std::snprintf(note, sizeof note, "union %.1f%%", 100.0 * kb / args.n_ff);
                const double best = time_bytes("batch", batch_op, (double)(kb + 2 * fired_any) * (double)rb, note,
                                               [&](const int32_t*, W wc, const uint8_t* dc) {
                                                   sparse_ffn_batch(wc, xq.data(), xq_stride, nt, wt, dc, rows.data(),
                                                                    masks.data(), kb, hb.data(), yb.data(), pool);
                                               });
                if (best > 0)
                    std::printf("%-5s %6.1f%% %-9s %.3f ms per token\n", dtype_name(wt), 100.0 * k / args.n_ff,
                                batch_op.c_str(), best * 1e3 / nt);
            }
            if (args.dense) {  // three matvecs over all weights, down in ggml's layout, layer copies in turn
                std::vector<std::vector<uint8_t>> down_dense_c(args.layers - 1, down);
                std::vector<float> g(args.n_ff), u(args.n_ff), hd(args.n_ff), yd(args.dim);
                std::vector<uint8_t> hq(dot_vec_bytes(wt, args.n_ff));
                std::vector<double> ts;
                double pk = 0.0;
                for (int it = 0; it < args.iters; it++) {
                    pk = args.warm ? peak.best : std::max(pk, peak.sample());
                    const int c = it % args.layers;
                    const auto t0 = Clock::now();
                    matvec(wt, layer_w(c, gate, gate_c), xq.data(), g.data(), args.n_ff, args.dim, pool);
                    matvec(wt, layer_w(c, up, up_c), xq.data(), u.data(), args.n_ff, args.dim, pool);
                    for (int64_t i = 0; i < args.n_ff; i++) hd[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
                    dot_prepare_vec(wt, hd.data(), hq.data(), args.n_ff);
                    matvec(wt, layer_w(c, down, down_dense_c), hq.data(), yd.data(), args.dim, args.n_ff, pool);
                    ts.push_back(seconds_since(t0));
                }
                const double best = *std::min_element(ts.begin(), ts.end());
                const double bytes = 3.0 * args.n_ff * rb;
                std::printf("%-5s %7s %-9s %9.3f %9.3f %8.1f %8.2f %6.0f%% %9.1f\n", dtype_name(wt), "dense", "ffn",
                            best * 1e3, ember_bench::bench_median(ts) * 1e3, bytes / 1e6,
                            bytes / best / 1e9,
                            100.0 * bytes / best / 1e9 / pk, pk);
            }
            std::printf("%-5s transpose (%lld, %lld) -> (%lld, %lld) at load: %.3f s (best of 3)\n", dtype_name(wt),
                        (long long)args.dim, (long long)args.n_ff, (long long)args.n_ff, (long long)args.dim, tr_s);
        }
        std::printf("peak read bandwidth (streaming sum, best 64 MiB segment, %d threads): %.1f GB/s\n", args.threads,
                    peak.best);
        return ok ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ember-sparse-ffn-bench: %s\n", e.what());
        return 1;
    }
}
