// ember-gpu-bench: every GPU kernel at a model's shapes (--shape 7b: dim 4096, n_ff 11008, 32 heads of 128; 13b;
// 70b: dim 8192, n_ff 28672, 64 heads and 8 KV heads), 4096 KV positions, each
// first checked against its CPU reference (exit 1 if wrong), then timed with CUDA events. Bandwidth-bound kernels
// print GB/s next to the card's theoretical peak (memory clock x bus width) and a measured device-to-device copy;
// GEMM prints TFLOP/s next to the FP16 tensor peak where the architecture's rate is known.
//   ember-gpu-bench [-i iterations] [--shape 7b|13b|70b] [--tokens N] [--rank R] [--active FRACTION]
//                   [--types f32,f16,bf16,q8_0,q4_0] [--only matvec,matmul,attention,predictor,sparse,steps]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "kernels-cpu/attention.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/norm.h"
#include "kernels-cpu/quant.h"
#include "kernels-cpu/rope.h"
#include "kernels-cpu/sparse-ffn.h"
#include "kernels-gpu/attention.h"
#include "kernels-gpu/cublas-check.h"
#include "kernels-gpu/cuda-check.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/elementwise.h"
#include "kernels-gpu/host-sync.h"
#include "kernels-gpu/matmul.h"
#include "kernels-gpu/norm.h"
#include "kernels-gpu/predictor.h"
#include "kernels-gpu/rope.h"
#include "kernels-gpu/sparse-ffn.h"
#include "tests/bench/bench-types.h"
#include "tests/kernels-gpu-device.h"

using namespace ember;
using ember::gpu_test::DeviceMem;
using ember::gpu_test::PreparedVec;
using ember::gpu_test::prepare_vec_host;
using ember::gpu_test::quantize_matrix;
using ember::gpu_test::randn;

namespace {

constexpr int64_t kHeadDim = 128, kKV = 4096;

struct Args {
    // Model shape (--shape): the FFN's dim and n_ff, attention heads of kHeadDim, and the KV heads of GQA.
    int64_t dim = 4096, ff = 11008, heads = 32, kv_heads = 32;
    int iters = 50;
    // --only: the groups to run (matvec, matmul, attention, predictor, sparse, steps); all if empty
    std::vector<std::string> only;
    int64_t tokens = 512;  // GEMM and prefill batch
    int rank = 1024;       // predictor hidden width
    double active = 0.10;  // sparse FFN: fraction of neurons active
    std::vector<DType> types = {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_BF16, DType::DTYPE_Q8_0,
                                DType::DTYPE_Q4_0};
};

[[noreturn]] void usage(const std::string& msg) {
    ember_bench::bench_usage("ember-gpu-bench",
                             "[-i iterations] [--shape 7b|13b|70b] [--tokens N] [--rank R] [--active FRACTION] "
                             "[--types f32,f16,bf16,q8_0,q4_0] "
                             "[--only matvec,matmul,attention,predictor,sparse,steps]",
                             msg);
}

Args parse(int argc, char** argv) {
    Args a;
    for (ember_bench::BenchFlags f(argc, argv, usage); f.next();) {
        const std::string& k = f.flag();
        auto val = [&] { return f.value(); };
        if (k == "-i") {
            a.iters = std::atoi(val().c_str());
        } else if (k == "--tokens") {
            a.tokens = std::atoll(val().c_str());
        } else if (k == "--rank") {
            a.rank = std::atoi(val().c_str());
        } else if (k == "--active") {
            a.active = std::atof(val().c_str());
        } else if (k == "--only") {
            for (const std::string& item : ember_bench::bench_split_list(val())) {
                if (item != "matvec" && item != "matmul" && item != "attention" && item != "predictor" &&
                    item != "sparse" && item != "steps")
                    usage("unknown group '" + item +
                          "' in --only, expected matvec, matmul, attention, predictor, sparse or steps");
                a.only.push_back(item);
            }
        } else if (k == "--shape") {
            const std::string v = val();
            ember_bench::BenchShape shape;
            if (!ember_bench::bench_parse_shape(v, &shape)) usage("unknown shape '" + v + "', expected 7b, 13b or 70b");
            a.dim = shape.dim, a.ff = shape.n_ff, a.heads = shape.heads, a.kv_heads = shape.kv_heads;
        } else if (k == "--types") {
            std::string unknown;
            if (!ember_bench::bench_parse_types(val(), &a.types, &unknown)) usage("unknown type '" + unknown + "'");
        } else {
            usage("unknown argument '" + k + "'");
        }
    }
    if (a.iters < 1 || a.tokens < 1 || a.rank < 32 || a.rank % 32 != 0 || !(a.active > 0 && a.active <= 1))
        usage("expected -i >= 1, --tokens >= 1, --rank a positive multiple of 32, --active in (0, 1]");
    return a;
}

// sum_c |w_rc x_c| of one row: the scale of float rounding in its dot product.
double row_magnitude(DType t, const uint8_t* row, const std::vector<float>& x) {
    std::vector<float> w(x.size());
    dequantize_row(t, row, w.data(), (int64_t)x.size());
    double m = 0.0;
    for (size_t c = 0; c < x.size(); c++) m += std::fabs((double)w[c] * x[c]);
    return m;
}

struct Device {
    cudaDeviceProp prop;
    double peak_gbs = 0;     // memory clock x bus width x 2 (double data rate)
    double copy_gbs = 0;     // measured device-to-device copy, bytes read + written
    double fp16_tflops = 0;  // dense FP16 tensor peak with float accumulation, 0 where unknown
    size_t l2_bytes = 0;
};

int g_failures = 0;

void check(bool ok, const std::string& what, double err) {
    if (!ok) {
        std::printf("  CHECK FAILED: %s (worst error / tolerance %.3g)\n", what.c_str(), err);
        g_failures++;
    }
}

// Mean milliseconds of fn(i) over iters calls (after one warm-up call), timed by events on the default stream.
double time_ms(int iters, const std::function<void(int)>& fn) {
    fn(0);
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    CUDA_CHECK(cudaEventRecord(e0, nullptr));
    for (int i = 0; i < iters; i++) fn(i + 1);
    CUDA_CHECK(cudaEventRecord(e1, nullptr));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    return ms / iters;
}

Device probe_device() {
    Device d;
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaGetDeviceProperties(&d.prop, dev));
    // CUDA 13 removed cudaDeviceProp::memoryClockRate and clockRate; the attributes remain.
    int mem_khz = 0, bus_bits = 0, sm_khz = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sm_khz, cudaDevAttrClockRate, dev));
    d.peak_gbs = 2.0 * mem_khz * 1e3 * (bus_bits / 8.0) / 1e9;
    d.l2_bytes = (size_t)d.prop.l2CacheSize;
    // Dense FP16 tensor FLOPs per SM per clock: 2048 on sm_80 (A100: 312 TFLOP/s), 4096 on sm_90 (H100 SXM:
    // 989 TFLOP/s at 1.83 GHz). Consumer parts (8.6, 8.9) differ by product, so none is claimed for them.
    const int cc = d.prop.major * 10 + d.prop.minor;
    const double per_clock = cc == 80 ? 2048 : cc == 90 ? 4096 : 0;
    d.fp16_tflops = per_clock * d.prop.multiProcessorCount * sm_khz * 1e3 / 1e12;

    const size_t bytes = (size_t)1 << 30;
    DeviceMem a(bytes), b(bytes);
    CUDA_CHECK(cudaMemset(a.as(), 1, bytes));
    const double ms = time_ms(
        10, [&](int) { CUDA_CHECK(cudaMemcpyAsync(b.as(), a.as(), bytes, cudaMemcpyDeviceToDevice, nullptr)); });
    d.copy_gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
    std::printf("device: %s, sm_%d%d, %d SMs, SM clock %.0f MHz, L2 %.0f MiB\n", d.prop.name, d.prop.major,
                d.prop.minor, d.prop.multiProcessorCount, sm_khz / 1e3, d.l2_bytes / 1048576.0);
    std::printf("memory: %.0f MHz x %d bits -> peak %.0f GB/s; device-to-device copy %.0f GB/s (%.0f%% of peak)\n",
                mem_khz / 1e3, bus_bits, d.peak_gbs, d.copy_gbs, 100.0 * d.copy_gbs / d.peak_gbs);
    if (d.fp16_tflops > 0)
        std::printf("FP16 tensor peak (dense, float accumulate, at the reported SM clock): %.0f TFLOP/s\n",
                    d.fp16_tflops);
    return d;
}

void print_bw(const Device& d, const std::string& name, double bytes, double ms) {
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    std::printf("%-34s %9.2f MB %9.1f us %7.0f GB/s  %3.0f%% of peak  %3.0f%% of copy\n", name.c_str(), bytes / 1e6,
                ms * 1e3, gbs, 100.0 * gbs / d.peak_gbs, 100.0 * gbs / d.copy_gbs);
}

// How many copies of `touched` bytes per call to cycle through so that L2 never holds the next call's data.
int copies_for(const Device& d, double touched, double bytes_each) {
    const double want = std::max(4.0 * d.l2_bytes, 256e6);
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const int by_memory = std::max(1, (int)(0.5 * free_b / bytes_each));
    return std::max(1, std::min(by_memory, (int)std::ceil(want / touched)));
}

// ---- GEMV ----
void bench_matvec(const Device& d, const Args& a) {
    std::printf("\n== matvec (one token): y = W x ==\n");
    // No shape below holds more than a.ff * a.dim weights.
    const std::vector<float> wf = randn((size_t)a.ff * a.dim, 0.02f, 1);
    for (DType t : a.types) {
        // The FFN's gate/up and down, attention's q/o, and its k/v where GQA makes them smaller.
        std::vector<std::pair<int64_t, int64_t>> shapes = {{a.ff, a.dim}, {a.dim, a.ff}, {a.dim, a.dim}};
        if (a.kv_heads < a.heads) shapes.push_back({a.kv_heads * kHeadDim, a.dim});
        if (dtype_block_elems(t) > 1 && a.rank <= a.dim) shapes.push_back({a.ff, a.rank});  // a predictor's fc2 (--rank)
        for (const auto& [rows, cols] : shapes) {
            const std::string name =
                std::string("matvec ") + dtype_name(t) + " " + std::to_string(rows) + "x" + std::to_string(cols);
            const auto w = quantize_matrix(t, wf, rows, cols);
            const std::vector<float> x = randn(cols, 1.0f, 2);
            const PreparedVec px = prepare_vec_host(t, x);
            const std::vector<uint8_t>& xq = px.xq;
            const std::vector<float>& xv = px.seen;
            const int n_copies = copies_for(d, (double)w.size(), (double)w.size());
            std::vector<std::unique_ptr<DeviceMem>> dw;
            for (int i = 0; i < n_copies; i++) dw.push_back(std::make_unique<DeviceMem>(w));
            DeviceMem dx(x), dxq(gpu::dot_vec_bytes(t, cols)), dy(rows * sizeof(float));
            gpu::dot_prepare_vec(t, dx.as<float>(), dxq.as(), cols, nullptr);
            gpu::matvec(t, dw[0]->as(), dxq.as(), dy.as<float>(), rows, cols, nullptr);
            const auto got = dy.to_host<float>();
            double worst = 0;
            const size_t rb = dtype_row_bytes(t, cols);
            for (int64_t r = 0; r < rows; r++) {
                const double want = dot_row_ref(t, w.data() + r * rb, xq.data(), cols);
                const double tol = 2e-5 * row_magnitude(t, w.data() + r * rb, xv) + 1e-6;
                worst = std::max(worst, std::fabs(got[r] - want) / tol);
            }
            check(worst <= 1, name, worst);
            const double ms = time_ms(a.iters, [&](int i) {
                gpu::matvec(t, dw[i % n_copies]->as(), dxq.as(), dy.as<float>(), rows, cols, nullptr);
            });
            print_bw(d, name, (double)w.size() + xq.size(), ms);
        }
    }
}

// ---- GEMM ----
void bench_matmul(const Device& d, const Args& a) {
    std::printf("\n== matmul (%lld tokens) through cuBLAS: Y = X W^T ==\n", (long long)a.tokens);
    cublasHandle_t handle;
    CUBLAS_CHECK(cublasCreate(&handle));
    const int64_t rows = a.ff, cols = a.dim, n = a.tokens;
    const std::vector<float> x = randn((size_t)n * cols, 1.0f, 3);
    DeviceMem dx(x), dy((size_t)n * rows * sizeof(float));
    for (DType t : a.types) {
        const std::string name =
            std::string("matmul ") + dtype_name(t) + " " + std::to_string(rows) + "x" + std::to_string(cols);
        const auto w = quantize_matrix(t, randn((size_t)rows * cols, 0.02f, 4), rows, cols);
        DeviceMem dw(w);
        gpu::GemmWorkspace ws;
        ws.handle = handle;
        ws.bytes = gpu::matmul_workspace_bytes(t, n, cols, rows);
        DeviceMem dws(ws.bytes);
        ws.ptr = dws.as();
        gpu::matmul(t, dw.as(), dx.as<float>(), dy.as<float>(), n, rows, cols, ws, nullptr);
        const auto got = dy.to_host<float>();
        // Rows [0, 16) and the last 16 against matmul_ref; tolerance as in the GEMM test (16-bit activations).
        const double tol_rel = t == DType::DTYPE_F32 ? 1e-5 : t == DType::DTYPE_BF16 ? 1.6e-2 : 2e-3;
        double worst = 0;
        const size_t rb = dtype_row_bytes(t, cols);
        for (int64_t r0 : {(int64_t)0, rows - 16}) {
            std::vector<float> want((size_t)n * 16);
            matmul_ref(t, w.data() + r0 * rb, x.data(), want.data(), n, 16, cols);
            for (int64_t i = 0; i < n; i++) {
                const std::vector<float> xi(x.begin() + i * cols, x.begin() + (i + 1) * cols);
                for (int64_t r = 0; r < 16; r++) {
                    const double tol = tol_rel * row_magnitude(t, w.data() + (r0 + r) * rb, xi) + 1e-6;
                    worst = std::max(worst, std::fabs(got[i * rows + r0 + r] - want[i * 16 + r]) / tol);
                }
                if (i == 3 && n > 64) i = n - 4;  // first and last tokens are enough
            }
        }
        check(worst <= 1, name, worst);
        const double ms = time_ms(std::max(3, a.iters / 5), [&](int) {
            gpu::matmul(t, dw.as(), dx.as<float>(), dy.as<float>(), n, rows, cols, ws, nullptr);
        });
        const double tflops = 2.0 * n * rows * cols / (ms * 1e-3) / 1e12;
        if (d.fp16_tflops > 0)
            std::printf("%-34s %9.1f us %7.1f TFLOP/s  %3.0f%% of FP16 tensor peak\n", name.c_str(), ms * 1e3, tflops,
                        100.0 * tflops / d.fp16_tflops);
        else
            std::printf("%-34s %9.1f us %7.1f TFLOP/s\n", name.c_str(), ms * 1e3, tflops);
    }
    CUBLAS_CHECK(cublasDestroy(handle));
}

// ---- RoPE and attention ----
void bench_attention(const Device& d, const Args& a) {
    std::printf("\n== RoPE and attention (%lld heads of %lld, KV %lld positions, F32 cache) ==\n", (long long)a.heads,
                (long long)kHeadDim, (long long)kKV);
    RopeParams rp;
    rp.head_dim = (int)kHeadDim;
    rp.n_rot = (int)kHeadDim;
    {
        std::vector<float> q = randn(a.heads * kHeadDim, 1.0f, 5);
        DeviceMem dq(q);
        gpu::rope(dq.as<float>(), (int)a.heads, (int)kKV - 1, rp, nullptr);
        const auto got = dq.to_host<float>();
        ember::rope(q.data(), (int)a.heads, (int)kKV - 1, rp);
        double worst = 0;
        for (size_t i = 0; i < q.size(); i++)
            worst = std::max(worst, std::fabs(got[i] - q[i]) / (1e-5 * (1 + std::fabs(q[i]))));
        check(worst <= 1, "rope", worst);
        const double ms =
            time_ms(a.iters, [&](int) { gpu::rope(dq.as<float>(), (int)a.heads, (int)kKV - 1, rp, nullptr); });
        print_bw(d, "rope q (one token)", 2.0 * q.size() * 4, ms);
    }
    for (int64_t kv_heads : {a.heads, a.heads / 4, a.heads / 8}) {
        const int64_t kv_stride = kv_heads * kHeadDim;
        const std::vector<float> q = randn(a.heads * kHeadDim, 1.0f, 6);
        const std::vector<float> k = randn((size_t)kKV * kv_stride, 1.0f, 7),
                                 v = randn((size_t)kKV * kv_stride, 1.0f, 8);
        DeviceMem dq(q), dk(k), dv(v), dout(q.size() * sizeof(float));
        DeviceMem dscratch(gpu::attention_scratch_floats((int)kKV, (int)a.heads, (int)kHeadDim, (int)a.tokens) *
                           sizeof(float));
        AttentionArgs at;
        at.n_heads = (int)a.heads;
        at.n_kv_heads = (int)kv_heads;
        at.head_dim = (int)kHeadDim;
        at.kv_stride = kv_stride;
        at.scale = 1.0f / std::sqrt((float)kHeadDim);
        // Decode: one token over all positions.
        std::vector<float> want(q.size()), scores(kKV);
        AttentionArgs c = at;
        c.q = q.data(), c.k_cache = k.data(), c.v_cache = v.data(), c.out = want.data(), c.scores = scores.data();
        c.n_kv = (int)kKV;
        attention_heads(c, 0, (int)a.heads);
        AttentionArgs g = at;
        g.q = dq.as<float>(), g.k_cache = dk.as<float>(), g.v_cache = dv.as<float>(), g.out = dout.as<float>();
        g.scores = dscratch.as<float>();
        g.n_kv = (int)kKV;
        gpu::attention_heads(g, 0, (int)a.heads, nullptr);
        auto got = dout.to_host<float>();
        double worst = 0;
        for (size_t i = 0; i < want.size(); i++)
            worst = std::max(worst, std::fabs(got[i] - want[i]) / (1e-4 * (1 + std::fabs(want[i]))));
        const std::string gqa = kv_heads == a.heads ? "" : " (GQA " + std::to_string(a.heads / kv_heads) + ")";
        check(worst <= 1, "attention decode" + gqa, worst);
        double ms = time_ms(a.iters, [&](int) { gpu::attention_heads(g, 0, (int)a.heads, nullptr); });
        print_bw(d, "attention decode" + gqa, 2.0 * kKV * kv_stride * 4, ms);

        // Prefill: a.tokens tokens ending at position kKV - 1.
        const int n = (int)std::min<int64_t>(a.tokens, kKV), pos0 = (int)kKV - n;
        const std::vector<float> qb = randn((size_t)n * a.heads * kHeadDim, 1.0f, 9);
        DeviceMem dqb(qb), doutb(qb.size() * sizeof(float));
        AttentionArgs gb = g;
        gb.q = dqb.as<float>(), gb.out = doutb.as<float>();
        gb.n_kv = (int)kKV;
        gpu::attention_prefill(gb, n, pos0, nullptr);
        got = doutb.to_host<float>();
        worst = 0;
        for (int i : {0, 1, n / 2, n - 1}) {
            c.q = qb.data() + (size_t)i * a.heads * kHeadDim;
            c.n_kv = pos0 + i + 1;
            attention_heads(c, 0, (int)a.heads);
            for (int64_t e = 0; e < a.heads * kHeadDim; e++) {
                const float w = want[e], gv = got[(size_t)i * a.heads * kHeadDim + e];
                worst = std::max(worst, std::fabs(gv - w) / (1e-4 * (1 + std::fabs(w))));
            }
        }
        check(worst <= 1, "attention prefill" + gqa, worst);
        ms = time_ms(std::max(3, a.iters / 5), [&](int) { gpu::attention_prefill(gb, n, pos0, nullptr); });
        double flops = 0;
        for (int i = 0; i < n; i++) flops += 4.0 * a.heads * kHeadDim * (pos0 + i + 1);
        std::printf("%-34s %9.1f us %7.2f TFLOP/s (QK^T and PV, FP32 CUDA cores)\n",
                    ("attention prefill " + std::to_string(n) + gqa).c_str(), ms * 1e3, flops / (ms * 1e-3) / 1e12);
    }
}

// ---- predictor ----
void bench_predictor(const Device& d, const Args& a) {
    std::printf("\n== predictor (dim %lld, rank %d, n_ff %lld) and threshold-and-compact ==\n", (long long)a.dim,
                a.rank, (long long)a.ff);
    const int rank = a.rank;
    const std::vector<float> fc1f = randn((size_t)rank * a.dim, 1.0f / std::sqrt((float)a.dim), 10);
    const std::vector<float> fc2f = randn((size_t)a.ff * rank, 1.0f / std::sqrt((float)rank), 11);
    const std::vector<float> x = randn(a.dim, 1.0f, 12);
    DeviceMem dx(x), dscores(a.ff * sizeof(float)), dactive(a.ff * sizeof(int32_t)), dcount(sizeof(int32_t));
    for (DType t : {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_Q8_0}) {
        const auto fc1 = quantize_matrix(t, fc1f, rank, a.dim), fc2 = quantize_matrix(t, fc2f, a.ff, rank);
        // CPU: the steps of predictor_scores for one token, with the scalar row reference.
        std::vector<uint8_t> xq(dot_vec_bytes(t, std::max<int64_t>(a.dim, rank)));
        dot_prepare_vec(t, x.data(), xq.data(), a.dim);
        std::vector<float> hidden(rank), want(a.ff);
        for (int k = 0; k < rank; k++)
            hidden[k] = std::max(0.0f, dot_row_ref(t, fc1.data() + k * dtype_row_bytes(t, a.dim), xq.data(), a.dim));
        dot_prepare_vec(t, hidden.data(), xq.data(), rank);
        for (int64_t i = 0; i < a.ff; i++)
            want[i] = dot_row_ref(t, fc2.data() + i * dtype_row_bytes(t, rank), xq.data(), rank);

        const int n_copies = copies_for(d, (double)(fc1.size() + fc2.size()), (double)(fc1.size() + fc2.size()));
        std::vector<std::unique_ptr<DeviceMem>> d1, d2;
        for (int i = 0; i < n_copies; i++)
            d1.push_back(std::make_unique<DeviceMem>(fc1)), d2.push_back(std::make_unique<DeviceMem>(fc2));
        gpu::PredictorGpuWeights p;
        p.type = t, p.dim = (int)a.dim, p.rank = rank, p.n_ff = (int)a.ff;
        p.fc1 = d1[0]->as(), p.fc2 = d2[0]->as();
        DeviceMem dxq(gpu::predictor_xq_bytes(p)), dhidden(rank * sizeof(float));
        const gpu::PredictorGpuScratch s{dxq.as(), dhidden.as<float>()};
        gpu::predictor_scores(p, dx.as<float>(), dscores.as<float>(), s, nullptr);
        const auto got = dscores.to_host<float>();
        double worst = 0;
        const float hmax = *std::max_element(hidden.begin(), hidden.end());
        for (int64_t i = 0; i < a.ff; i++) {
            std::vector<float> row(rank);
            dequantize_row(t, fc2.data() + i * dtype_row_bytes(t, rank), row.data(), rank);
            double mag = 0, wmax = 0;
            for (int k = 0; k < rank; k++)
                mag += std::fabs((double)row[k]) * hidden[k], wmax = std::max(wmax, (double)std::fabs(row[k]));
            const double tol = 1e-4 * mag + (t == DType::DTYPE_Q8_0 ? 4.0 * wmax * hmax / 127.0 : 0.0) + 1e-6;
            worst = std::max(worst, std::fabs(got[i] - want[i]) / tol);
        }
        check(worst <= 1, std::string("predictor ") + dtype_name(t), worst);
        const double ms = time_ms(a.iters, [&](int i) {
            gpu::PredictorGpuWeights pi = p;
            pi.fc1 = d1[i % n_copies]->as(), pi.fc2 = d2[i % n_copies]->as();
            gpu::predictor_scores(pi, dx.as<float>(), dscores.as<float>(), s, nullptr);
        });
        print_bw(d, std::string("predictor scores ") + dtype_name(t), (double)(fc1.size() + fc2.size()), ms);
    }
    // Threshold at the (1 - active) quantile of the last scores: about `active` of the neurons pass.
    auto sc = dscores.to_host<float>();
    std::vector<float> sorted = sc;
    std::sort(sorted.begin(), sorted.end());
    const float threshold = sorted[(size_t)((1.0 - a.active) * (a.ff - 1))];
    gpu::predictor_active(dscores.as<float>(), (int)a.ff, threshold, dactive.as<int32_t>(), dcount.as<int32_t>(),
                          nullptr);
    const int32_t k = dcount.to_host<int32_t>()[0];
    auto act = dactive.to_host<int32_t>();
    std::vector<int32_t> want;
    for (int i = 0; i < a.ff; i++)
        if (sc[i] > threshold) want.push_back(i);
    act.resize(std::max(0, k));
    check(act == want, "predictor_active list", act == want ? 0 : 1e9);
    const double ms = time_ms(a.iters, [&](int) {
        gpu::predictor_active(dscores.as<float>(), (int)a.ff, threshold, dactive.as<int32_t>(), dcount.as<int32_t>(),
                              nullptr);
    });
    std::printf("%-34s %9.1f us (%d of %lld active, one block)\n", "predictor_active", ms * 1e3, k, (long long)a.ff);
}

// ---- sparse FFN ----
void bench_sparse(const Device& d, const Args& a) {
    const int64_t k = std::max<int64_t>(1, (int64_t)std::llround(a.active * a.ff));
    std::printf("\n== sparse FFN (dim %lld, n_ff %lld, %lld active, SiLU so both rows are read) ==\n", (long long)a.dim,
                (long long)a.ff, (long long)k);
    std::mt19937 rng(13);
    std::vector<int32_t> all(a.ff);
    for (int64_t i = 0; i < a.ff; i++) all[i] = (int32_t)i;
    std::shuffle(all.begin(), all.end(), rng);
    std::vector<int32_t> active(all.begin(), all.begin() + k);
    std::sort(active.begin(), active.end());
    const std::vector<float> x = randn(a.dim, 1.0f, 14);
    const std::vector<float> h = randn(k, 1.0f, 15);
    DeviceMem dactive(active), dcount(std::vector<int32_t>{(int32_t)k}), dx(x), dh(h), dhout(k * sizeof(float));
    DeviceMem dy(a.dim * sizeof(float)), dscratch(gpu::sparse_down_scratch_floats(a.dim) * sizeof(float));
    const float s = 1.0f / std::sqrt((float)a.dim);
    const std::vector<float> gatef = randn((size_t)a.ff * a.dim, s, 16), upf = randn((size_t)a.ff * a.dim, s, 17);
    const std::vector<float> downf = randn((size_t)a.ff * a.dim, 0.02f, 18);  // transposed: (n_ff, dim)
    for (DType t : a.types) {
        const auto gate = quantize_matrix(t, gatef, a.ff, a.dim);
        const auto up = quantize_matrix(t, upf, a.ff, a.dim);
        const auto down_t = quantize_matrix(t, downf, a.ff, a.dim);
        const size_t rb = dtype_row_bytes(t, a.dim);
        const double touched_gu = 2.0 * k * rb, touched_down = (double)k * rb;
        const int n_copies = copies_for(d, touched_down, 3.0 * gate.size());
        std::vector<std::unique_ptr<DeviceMem>> dg, du, dd;
        for (int i = 0; i < n_copies; i++) {
            dg.push_back(std::make_unique<DeviceMem>(gate));
            du.push_back(std::make_unique<DeviceMem>(up));
            dd.push_back(std::make_unique<DeviceMem>(down_t));
        }
        // gate/up against sparse_gate_up_ref.
        std::vector<uint8_t> xq(dot_vec_bytes(t, a.dim));
        dot_prepare_vec(t, x.data(), xq.data(), a.dim);
        std::vector<float> xv(a.dim);
        dequantize_row(dot_vec_type(t), xq.data(), xv.data(), a.dim);
        SparseGateUpWeights w{t, gate.data(), up.data(), a.dim, SparseAct::SPARSE_ACT_SILU};
        std::vector<float> want(k);
        sparse_gate_up_ref(w, xq.data(), active.data(), k, want.data());
        DeviceMem dxq(gpu::dot_vec_bytes(t, a.dim));
        gpu::dot_prepare_vec(t, dx.as<float>(), dxq.as(), a.dim, nullptr);
        SparseGateUpWeights gw{t, dg[0]->as(), du[0]->as(), a.dim, SparseAct::SPARSE_ACT_SILU};
        gpu::sparse_gate_up(gw, dxq.as(), dactive.as<int32_t>(), dcount.as<int32_t>(), a.ff, dhout.as<float>(),
                            nullptr);
        auto got = dhout.to_host<float>();
        double worst = 0;
        for (int64_t j = 0; j < k; j++) {
            const uint8_t* gr = gate.data() + active[j] * rb;
            const uint8_t* ur = up.data() + active[j] * rb;
            const double g = dot_row_ref(t, gr, xq.data(), a.dim), u = dot_row_ref(t, ur, xq.data(), a.dim);
            const double sg = row_magnitude(t, gr, xv), su = row_magnitude(t, ur, xv);
            const double tol = 1e-5 * (1.1 * std::fabs(u) * sg + std::fabs(g) * su) + 1e-10 * sg * su + 1e-7;
            worst = std::max(worst, std::fabs(got[j] - want[j]) / tol);
        }
        check(worst <= 1, std::string("sparse_gate_up ") + dtype_name(t), worst);
        double ms = time_ms(a.iters, [&](int i) {
            SparseGateUpWeights wi{t, dg[i % n_copies]->as(), du[i % n_copies]->as(), a.dim,
                                   SparseAct::SPARSE_ACT_SILU};
            gpu::sparse_gate_up(wi, dxq.as(), dactive.as<int32_t>(), dcount.as<int32_t>(), a.ff, dhout.as<float>(),
                                nullptr);
        });
        print_bw(d, std::string("sparse_gate_up ") + dtype_name(t), touched_gu, ms);

        // down against sparse_down_ref.
        std::vector<float> ywant(a.dim);
        sparse_down_ref(t, down_t.data(), h.data(), active.data(), k, ywant.data(), a.dim);
        gpu::sparse_down(t, dd[0]->as(), dh.as<float>(), dactive.as<int32_t>(), dcount.as<int32_t>(), dy.as<float>(),
                         a.dim, dscratch.as<float>(), nullptr);
        got = dy.to_host<float>();
        std::vector<double> mag(a.dim, 0.0);
        std::vector<float> row(a.dim);
        for (int64_t j = 0; j < k; j++) {
            dequantize_row(t, down_t.data() + active[j] * rb, row.data(), a.dim);
            for (int64_t c = 0; c < a.dim; c++) mag[c] += std::fabs((double)h[j] * row[c]);
        }
        worst = 0;
        for (int64_t c = 0; c < a.dim; c++)
            worst = std::max(worst, std::fabs(got[c] - ywant[c]) / (1e-5 * mag[c] + 1e-7));
        check(worst <= 1, std::string("sparse_down ") + dtype_name(t), worst);
        ms = time_ms(a.iters, [&](int i) {
            gpu::sparse_down(t, dd[i % n_copies]->as(), dh.as<float>(), dactive.as<int32_t>(), dcount.as<int32_t>(),
                             dy.as<float>(), a.dim, dscratch.as<float>(), nullptr);
        });
        print_bw(d, std::string("sparse_down ") + dtype_name(t), touched_down, ms);
    }
}

// ---- the small steps between a decode step's matvecs ----
// One token's RMSNorm, the fused residual add + RMSNorm + Q8_0 preparation against its three launches, the GLU with
// its Q8_0 output against two launches, and the handoffs to pinned host memory (a split layer's, the residual's).
// Inputs stay in L2, as in a decode step; the time per call (launched back to back, chained) is the step's cost.
void bench_steps(const Device& d, const Args& a) {
    std::printf("\n== steps between matvecs (one token) ==\n");
    const int64_t n = a.dim, ff = a.ff;
    const std::vector<float> x = randn(n + 4, 1.0f, 71), y = randn(n + 4, 1.0f, 72), w = randn(n + 4, 1.0f, 73);
    DeviceMem dx(x), dy(y), dw(w), dout((n + 4) * sizeof(float)), dq(gpu::dot_vec_bytes(DType::DTYPE_Q8_0, ff));

    std::vector<float> want(n);
    ember::rmsnorm(want.data(), x.data(), w.data(), n, 1e-5f);
    double worst = 0;
    gpu::rmsnorm(dout.as<float>(), dx.as<float>(), dw.as<float>(), n, 1e-5f, 1, nullptr);
    const auto got = dout.to_host<float>();
    for (int64_t i = 0; i < n; i++) worst = std::max(worst, std::fabs(got[i] - want[i]) / (1e-4 * (1 + std::fabs(want[i]))));
    check(worst <= 1, "rmsnorm", worst);

    const double norm_bytes = 3.0 * n * sizeof(float);
    double ms = time_ms(a.iters, [&](int) {
        gpu::rmsnorm(dout.as<float>(), dx.as<float>(), dw.as<float>(), n, 1e-5f, 1, nullptr);
    });
    print_bw(d, "rmsnorm (row in registers)", norm_bytes, ms);
    ms = time_ms(a.iters, [&](int) {  // unaligned rows take the strided loop
        gpu::rmsnorm(dout.as<float>() + 1, dx.as<float>() + 1, dw.as<float>() + 1, n, 1e-5f, 1, nullptr);
    });
    print_bw(d, "rmsnorm (strided loop)", norm_bytes, ms);

    const double fused_bytes = 5.0 * n * sizeof(float) + (double)gpu::dot_vec_bytes(DType::DTYPE_Q8_0, n);
    ms = time_ms(a.iters, [&](int) {
        gpu::add_rmsnorm(dx.as<float>(), dy.as<float>(), dw.as<float>(), n, 1e-5f, dout.as<float>(), dq.as(),
                         nullptr);
    });
    print_bw(d, "add + rmsnorm + q8, one launch", fused_bytes, ms);
    ms = time_ms(a.iters, [&](int) {
        gpu::add_inplace(dx.as<float>(), dy.as<float>(), n, nullptr);
        gpu::rmsnorm(dout.as<float>(), dx.as<float>(), dw.as<float>(), n, 1e-5f, 1, nullptr);
        gpu::dot_prepare_vec(DType::DTYPE_Q8_0, dout.as<float>(), dq.as(), n, nullptr);
    });
    print_bw(d, "add, rmsnorm, q8: three launches", fused_bytes, ms);

    const std::vector<float> g = randn(ff, 1.0f, 74), u = randn(ff, 1.0f, 75);
    DeviceMem dg(g), du(u), dh(ff * sizeof(float));
    const double glu_bytes = 3.0 * ff * sizeof(float) + (double)gpu::dot_vec_bytes(DType::DTYPE_Q8_0, ff);
    ms = time_ms(a.iters, [&](int) {
        gpu::swiglu(dh.as<float>(), dg.as<float>(), du.as<float>(), ff, nullptr, dq.as());
    });
    print_bw(d, "swiglu + q8, one launch", glu_bytes, ms);
    ms = time_ms(a.iters, [&](int) {
        gpu::swiglu(dh.as<float>(), dg.as<float>(), du.as<float>(), ff, nullptr);
        gpu::dot_prepare_vec(DType::DTYPE_Q8_0, dh.as<float>(), dq.as(), ff, nullptr);
    });
    print_bw(d, "swiglu, q8: two launches", glu_bytes, ms);

    // The split FFN's handoff: xn as the host's Q8_0 blocks and one bit for each of half the layer's scores (the
    // cold half) to pinned memory, then the counter; and the residual going down (n floats, then the counter).
    const int64_t n_scores = ff / 2, n_words = (n_scores + 31) / 32;
    const size_t x_bytes = dot_vec_bytes(DType::DTYPE_Q8_0, n);
    const float thr = 0.5f;
    std::vector<float> xn_h(n), scores_h(n_scores);
    CUDA_CHECK(cudaMemcpy(xn_h.data(), dout.as<float>(), n * sizeof(float), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(scores_h.data(), dh.as<float>(), n_scores * sizeof(float), cudaMemcpyDeviceToHost));
    gpu::dot_prepare_vec(DType::DTYPE_Q8_0, dout.as<float>(), dq.as(), n, nullptr);
    uint8_t* host = nullptr;
    const size_t host_bytes = x_bytes + (n_words + 1) * sizeof(uint32_t) + n * sizeof(float) + 64;
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host), host_bytes, cudaHostAllocDefault));
    auto* bits = reinterpret_cast<uint32_t*>(host + (x_bytes + 3) / 4 * 4);
    auto* x_down = reinterpret_cast<float*>(bits + n_words + 1);
    auto* counter = reinterpret_cast<volatile uint32_t*>(x_down + n);
    *counter = 0;
    gpu::SplitFfnHandoff h;
    h.host_x = host;
    h.x = dout.as<float>();
    h.x_q8 = dq.as();
    h.n = n;
    h.host_bits = bits;
    h.scores = dh.as<float>();
    h.n_scores = n_scores;
    h.threshold = thr;
    ms = time_ms(a.iters, [&](int i) { gpu::hand_split_ffn_inputs_to_host(h, counter, (uint32_t)i + 1, nullptr); });
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<uint8_t> want_q8(x_bytes);
    dot_prepare_vec(DType::DTYPE_Q8_0, xn_h.data(), want_q8.data(), n);
    int64_t wrong = std::memcmp(host, want_q8.data(), x_bytes) != 0 ? 1 : 0;
    for (int64_t i = 0; i < n_scores; i++) wrong += ((bits[i / 32] >> (i % 32)) & 1u) != (scores_h[i] > thr ? 1u : 0u);
    check(wrong == 0 && *counter == (uint32_t)a.iters + 1, "hand_split_ffn_inputs_to_host", (double)wrong);
    print_bw(d, "hand_split_ffn_inputs_to_host (to host)", (double)x_bytes + n_words * sizeof(uint32_t), ms);

    ms = time_ms(a.iters, [&](int i) {
        gpu::copy_to_host_and_signal(x_down, dout.as<float>(), n, counter, (uint32_t)i + 1, nullptr);
    });
    CUDA_CHECK(cudaDeviceSynchronize());
    check(x_down[0] == xn_h[0] && *counter == (uint32_t)a.iters + 1, "copy_to_host_and_signal",
          x_down[0] == xn_h[0] ? 0 : 1e9);
    print_bw(d, "copy_to_host_and_signal (to host)", (double)n * sizeof(float), ms);
    CUDA_CHECK(cudaFreeHost(host));
}

}  // namespace

int main(int argc, char** argv) {
    const Args a = parse(argc, argv);
    try {
        if (gpu::cuda_device_count() == 0) {
            std::fprintf(stderr, "ember-gpu-bench: no CUDA device\n");
            return 2;
        }
        const Device d = probe_device();
        auto wanted = [&](const char* group) {
            return a.only.empty() || std::find(a.only.begin(), a.only.end(), group) != a.only.end();
        };
        if (wanted("matvec")) bench_matvec(d, a);
        if (wanted("matmul")) bench_matmul(d, a);
        if (wanted("attention")) bench_attention(d, a);
        if (wanted("predictor")) bench_predictor(d, a);
        if (wanted("sparse")) bench_sparse(d, a);
        if (wanted("steps")) bench_steps(d, a);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ember-gpu-bench: %s\n", e.what());
        return 1;
    }
    if (g_failures > 0) {
        std::printf("\n%d check(s) FAILED\n", g_failures);
        return 1;
    }
    std::printf("\nall checks passed\n");
    return 0;
}
