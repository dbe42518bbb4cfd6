// GPU sparse FFN kernels against kernels-cpu's references, with the active count in device memory, and the whole
// GPU chain (dense gate -> threshold-and-compact -> sparse gate/up -> sparse down) against the dense CPU FFN.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels-cpu/activation.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/sparse-ffn.h"
#include "kernels-cpu/thread-pool.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/matmul.h"
#include "kernels-gpu/predictor.h"
#include "kernels-gpu/sparse-ffn.h"
#include "tests/kernels-gpu-test-util.h"

namespace ember::gpu_test {
namespace {

// k indices in [0, n_ff): ascending without repeats, or (shuffled) in random order with some repeated.
std::vector<int32_t> make_active(int64_t n_ff, int64_t k, bool shuffled, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> all(n_ff);
    for (int64_t i = 0; i < n_ff; i++) all[i] = (int32_t)i;
    std::shuffle(all.begin(), all.end(), rng);
    std::vector<int32_t> a(all.begin(), all.begin() + std::min(k, n_ff));
    if (shuffled) {
        for (size_t j = 0; j + 3 < a.size(); j += 4) a[j + 3] = a[j];  // repeats count twice, as on the CPU
    } else {
        std::sort(a.begin(), a.end());
    }
    return a;
}

// The count lives on the device; the active buffer has room for the whole list plus trailing garbage indices that
// must not be read (they point far outside the weights).
struct DeviceList {
    DeviceMem active, count;
    DeviceList(const std::vector<int32_t>& a, int64_t room)
        : active(pad(a, room)), count(std::vector<int32_t>{(int32_t)a.size()}) {}
    static std::vector<int32_t> pad(std::vector<int32_t> a, int64_t room) {
        a.resize(std::max<int64_t>(room, (int64_t)a.size() + 1), 1 << 30);
        return a;
    }
};

struct GateUpCase {
    int64_t dim, n_ff, k;
    bool shuffled;
};

// h_j = f(g_j) u_j with |f'| <= 1.1 and |f(g)| <= |g| for ReLU and SiLU, and dot errors |dg| <= e Sg, |du| <= e Su
// (S = sum of |w_i x_i|, e = 1e-5 for float sums in another order): |dh| <= e (1.1 |u| Sg + |g| Su) + e^2 Sg Su.
TEST_F(Gpu, SparseGateUpMatchesCpuEveryType) {
    for (DType t : kAllTypes) {
        const bool quant = dtype_block_elems(t) > 1;
        // Q8_0/Q4_0 rows of 1024, 4096 and 16640 go through shared memory (a short tile; two tiles; 8 whole and a
        // short one); 9000 of 12000 neurons are more than the 4096 warps launched, so that warps take several
        // neurons in turn (the ReLU half whose gates are not positive drop the up tiles already on their way; rows of
        // one tile also the next gate tiles). F16/BF16 rows of 64 to 16640 take 2 KiB tiles, the last one short.
        std::vector<GateUpCase> cases = {{64, 100, 0, false},         {96, 300, 31, false},   {4096, 1000, 333, true},
                                         {1024, 11008, 1100, false}, {16640, 200, 150, true}, {256, 12000, 9000, true}};
        if (!quant) cases.push_back({100, 77, 50, true});  // rows of 100: the per-element path
        for (const GateUpCase c : cases) {
            for (SparseAct act : {SparseAct::SPARSE_ACT_RELU, SparseAct::SPARSE_ACT_SILU}) {
                SCOPED_TRACE(std::string(dtype_name(t)) + " dim=" + std::to_string(c.dim) +
                             " n_ff=" + std::to_string(c.n_ff) + " k=" + std::to_string(c.k) +
                             (act == SparseAct::SPARSE_ACT_RELU ? " relu" : " silu"));
                const float s = 1.0f / std::sqrt((float)c.dim);
                const auto gate = quantize_matrix(t, randn((size_t)c.n_ff * c.dim, s, 71), c.n_ff, c.dim);
                const auto up = quantize_matrix(t, randn((size_t)c.n_ff * c.dim, s, 72), c.n_ff, c.dim);
                const std::vector<float> x = randn(c.dim, 1.0f, 73);
                const auto active = make_active(c.n_ff, c.k, c.shuffled, 74);

                std::vector<uint8_t> xq(dot_vec_bytes(t, c.dim));
                dot_prepare_vec(t, x.data(), xq.data(), c.dim);
                std::vector<float> xv(c.dim);
                dequantize_row(dot_vec_type(t), xq.data(), xv.data(), c.dim);
                SparseGateUpWeights w{t, gate.data(), up.data(), c.dim, act};
                std::vector<float> want(active.size());
                sparse_gate_up_ref(w, xq.data(), active.data(), (int64_t)active.size(), want.data());

                DeviceMem dgate(gate), dup(up), dx(x), dxq(gpu::dot_vec_bytes(t, c.dim));
                DeviceList list(active, c.n_ff);
                const std::vector<float> sentinel(active.size() + 1, 777.0f);
                DeviceMem dh(sentinel);
                gpu::dot_prepare_vec(t, dx.as<float>(), dxq.as(), c.dim, nullptr);
                SparseGateUpWeights gw{t, dgate.as(), dup.as(), c.dim, act};
                gpu::sparse_gate_up(gw, dxq.as(), list.active.as<int32_t>(), list.count.as<int32_t>(), c.n_ff,
                                    dh.as<float>(), nullptr);
                const auto got = dh.to_host<float>();
                ASSERT_EQ(got[active.size()], 777.0f) << "h written past *k";

                const auto gf = dequantize_matrix(t, gate, c.n_ff, c.dim), uf = dequantize_matrix(t, up, c.n_ff, c.dim);
                const size_t rb = dtype_row_bytes(t, c.dim);
                for (size_t j = 0; j < active.size(); j++) {
                    const int64_t n = active[j];
                    double sg = 0.0, su = 0.0;
                    for (int64_t i = 0; i < c.dim; i++) {
                        sg += std::fabs((double)gf[n * c.dim + i] * xv[i]);
                        su += std::fabs((double)uf[n * c.dim + i] * xv[i]);
                    }
                    const double g = dot_row_ref(t, gate.data() + n * rb, xq.data(), c.dim);
                    const double u = dot_row_ref(t, up.data() + n * rb, xq.data(), c.dim);
                    const double tol = 1e-5 * (1.1 * std::fabs(u) * sg + std::fabs(g) * su) + 1e-10 * sg * su + 1e-7;
                    ASSERT_NEAR(got[j], want[j], tol) << "j=" << j << " neuron " << n;
                }
            }
        }
    }
}

// y = sum_j h_j row_{a_j}, against sparse_down_ref (double): |error| <= 1e-5 * sum_j |h_j w_jc|. Some h_j are 0
// (ReLU zeros), whose rows are skipped as on the CPU. Rows of 32-element units that are a multiple of 16 bytes long
// take the column slices: fewer neurons than parts of the list (most parts empty), many pipeline stages a part, parts
// longer than the 512 rows staged at a time (36000 neurons), repeated neurons, and short last slices (Q8_0/Q4_0 5120 =
// 64 + 64 + 32 blocks; F32/F16/BF16 2080 = 32 + 32 + 1 units). The others take the per-unit kernel: Q8_0/Q4_0 rows
// of 2 or 3 blocks or 2080 elements, F32/F16/BF16 rows of 40 (units of 8) and of 100 or 1 (single elements).
TEST_F(Gpu, SparseDownMatchesCpuEveryType) {
    for (DType t : kAllTypes) {
        const bool quant = dtype_block_elems(t) > 1;
        std::vector<GateUpCase> cases = {{64, 100, 0, false},        {96, 300, 31, false},
                                         {4096, 1000, 333, true},    {2080, 11008, 1100, false},
                                         {32, 5, 5, false},          {256, 3000, 5, false},
                                         {2048, 6000, 4000, false},  {5120, 3000, 2500, true},
                                         {256, 50, 0, false},        {256, 40000, 36000, false}};
        if (!quant) cases.insert(cases.end(), {{100, 77, 50, true}, {1, 10, 10, false}, {40, 60, 30, true}});
        for (const GateUpCase c : cases) {
            SCOPED_TRACE(std::string(dtype_name(t)) + " dim=" + std::to_string(c.dim) +
                         " n_ff=" + std::to_string(c.n_ff) + " k=" + std::to_string(c.k));
            const auto down_t = quantize_matrix(t, randn((size_t)c.n_ff * c.dim, 0.1f, 81), c.n_ff, c.dim);
            const auto active = make_active(c.n_ff, c.k, c.shuffled, 82);
            std::vector<float> h = randn(active.size(), 1.0f, 83);
            for (size_t j = 0; j < h.size(); j += 3) h[j] = 0.0f;
            std::vector<float> want(c.dim);
            sparse_down_ref(t, down_t.data(), h.data(), active.data(), (int64_t)active.size(), want.data(), c.dim);

            DeviceMem dw(down_t), dh(h.empty() ? std::vector<float>{0.0f} : h);
            DeviceMem dy(std::vector<float>(c.dim, 555.0f));  // overwritten, also where *k == 0
            DeviceMem dscratch(gpu::sparse_down_scratch_floats(c.dim) * sizeof(float));
            DeviceList list(active, c.n_ff);
            gpu::sparse_down(t, dw.as(), dh.as<float>(), list.active.as<int32_t>(), list.count.as<int32_t>(),
                             dy.as<float>(), c.dim, dscratch.as<float>(), nullptr);
            const auto got = dy.to_host<float>();
            const auto wf = dequantize_matrix(t, down_t, c.n_ff, c.dim);
            for (int64_t col = 0; col < c.dim; col++) {
                double mag = 0.0;
                for (size_t j = 0; j < active.size(); j++)
                    mag += std::fabs((double)h[j] * wf[(size_t)active[j] * c.dim + col]);
                ASSERT_NEAR(got[col], want[col], 1e-5 * mag + 1e-7) << "column " << col;
            }
        }
    }
}

// The same inputs give the same bits on every run (no atomics in sparse_down), through both kernels.
TEST_F(Gpu, SparseDownIsDeterministic) {
    const std::pair<DType, int64_t> cases[] = {
        {DType::DTYPE_F16, 4096}, {DType::DTYPE_Q4_0, 4096}, {DType::DTYPE_F16, 4104}};
    for (const auto& [t, dim] : cases) {
        const int64_t n_ff = 11008;
        SCOPED_TRACE(std::string(dtype_name(t)) + " dim=" + std::to_string(dim));
        const auto down_t = quantize_matrix(t, randn((size_t)n_ff * dim, 0.1f, 84), n_ff, dim);
        const auto active = make_active(n_ff, 2000, false, 85);
        DeviceMem dw(down_t), dh(randn(active.size(), 1.0f, 86)), dy(dim * sizeof(float));
        DeviceMem dscratch(gpu::sparse_down_scratch_floats(dim) * sizeof(float));
        DeviceList list(active, n_ff);
        std::vector<float> first;
        for (int run = 0; run < 3; run++) {
            gpu::sparse_down(t, dw.as(), dh.as<float>(), list.active.as<int32_t>(), list.count.as<int32_t>(),
                             dy.as<float>(), dim, dscratch.as<float>(), nullptr);
            const auto got = dy.to_host<float>();
            if (run == 0) first = got;
            ASSERT_EQ(got, first) << "run " << run;
        }
    }
}

// "Sparse equals dense" (DESIGN.md) on the GPU with an oracle predictor: scores = the dense gate pre-activations,
// threshold 0, so predictor_active writes the true ReLU active set and its count on the device; sparse gate/up and
// down read them there. Reference: the dense ReGLU FFN on the CPU (matmul_ref, reglu, matmul_ref on ggml's w_down).
// Tolerance 1e-4 relative to sum_j |h_j| max|w_down| (float dots in another order; Q8_0/Q4_0 dots share the
// quantized x on both sides).
TEST_F(Gpu, SparseEqualsDenseThroughDeviceCount) {
    const int64_t dim = 256, n_ff = 1000;
    for (DType t : {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_Q8_0, DType::DTYPE_Q4_0}) {
        SCOPED_TRACE(dtype_name(t));
        const float s = 1.0f / std::sqrt((float)dim);
        const auto gate = quantize_matrix(t, randn((size_t)n_ff * dim, s, 91), n_ff, dim);
        const auto up = quantize_matrix(t, randn((size_t)n_ff * dim, s, 92), n_ff, dim);
        const std::vector<float> down = randn((size_t)dim * n_ff, 0.05f, 93);  // ggml layout (dim, n_ff), F32
        std::vector<uint8_t> down_t(dtype_row_bytes(t, dim) * n_ff);
        ThreadPool pool(1);
        sparse_down_transpose(DType::DTYPE_F32, down.data(), t, down_t.data(), dim, n_ff, pool);
        const auto down_tf = dequantize_matrix(t, down_t, n_ff, dim);
        const std::vector<float> x = randn(dim, 1.0f, 94);

        // Dense reference with the activations the products see (Q8_0-rounded x for quantized weights).
        std::vector<uint8_t> xq(dot_vec_bytes(t, dim));
        dot_prepare_vec(t, x.data(), xq.data(), dim);
        std::vector<float> g(n_ff), u(n_ff), hd(n_ff), want(dim, 0.0f);
        const size_t rb = dtype_row_bytes(t, dim);
        for (int64_t i = 0; i < n_ff; i++) {
            g[i] = dot_row_ref(t, gate.data() + i * rb, xq.data(), dim);
            u[i] = dot_row_ref(t, up.data() + i * rb, xq.data(), dim);
        }
        reglu(hd.data(), g.data(), u.data(), n_ff);
        double hsum = 0.0;
        for (int64_t i = 0; i < n_ff; i++) hsum += std::fabs(hd[i]);
        for (int64_t c = 0; c < dim; c++) {
            double acc = 0.0;
            for (int64_t i = 0; i < n_ff; i++) acc += (double)hd[i] * down_tf[i * dim + c];
            want[c] = (float)acc;
        }

        DeviceMem dgate(gate), dup(up), ddown(down_t), dx(x), dxq(gpu::dot_vec_bytes(t, dim));
        DeviceMem dscores(n_ff * sizeof(float)), dactive(n_ff * sizeof(int32_t)), dcount(sizeof(int32_t));
        DeviceMem dh(n_ff * sizeof(float)), dy(dim * sizeof(float));
        DeviceMem dscratch(gpu::sparse_down_scratch_floats(dim) * sizeof(float));
        gpu::dot_prepare_vec(t, dx.as<float>(), dxq.as(), dim, nullptr);
        gpu::matvec(t, dgate.as(), dxq.as(), dscores.as<float>(), n_ff, dim, nullptr);  // oracle scores
        gpu::predictor_active(dscores.as<float>(), (int)n_ff, 0.0f, dactive.as<int32_t>(), dcount.as<int32_t>(),
                              nullptr);
        SparseGateUpWeights gw{t, dgate.as(), dup.as(), dim, SparseAct::SPARSE_ACT_RELU};
        gpu::sparse_gate_up(gw, dxq.as(), dactive.as<int32_t>(), dcount.as<int32_t>(), n_ff, dh.as<float>(), nullptr);
        gpu::sparse_down(t, ddown.as(), dh.as<float>(), dactive.as<int32_t>(), dcount.as<int32_t>(), dy.as<float>(),
                         dim, dscratch.as<float>(), nullptr);
        const auto got = dy.to_host<float>();
        const int32_t k = dcount.to_host<int32_t>()[0];
        EXPECT_GT(k, n_ff / 4);  // about half the neurons fire for random weights
        EXPECT_LT(k, 3 * n_ff / 4);
        float wmax = 0.0f;
        for (float v : down_tf) wmax = std::max(wmax, std::fabs(v));
        for (int64_t c = 0; c < dim; c++) ASSERT_NEAR(got[c], want[c], 1e-4 * hsum * wmax + 1e-6) << "column " << c;
    }
}

}  // namespace
}  // namespace ember::gpu_test
