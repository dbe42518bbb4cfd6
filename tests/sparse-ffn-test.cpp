// Sparse FFN operators: "sparse equals dense" (DESIGN.md) with an oracle active set, references vs SIMD paths,
// thread-count invariance, empty lists, the fused sparse_ffn against the two calls it replaces, the batch kernel
// sparse_ffn_batch against per-token calls, the transposition helper and the active-list check; and the axpy and
// dot_row_xs and dot_rows_gather kernels of the dispatch table (dot-isa.h) that they run on, every SIMD level against
// the scalar table.
#include "kernels-cpu/sparse-ffn.h"

#include <gtest/gtest.h>

#include "kernels-cpu/sparse-ffn-batch.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "kernels-cpu/activation.h"
#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"
#include "kernels-cpu/quant.h"

namespace ember {
namespace {

using Bytes = std::vector<uint8_t>;

std::vector<float> randn(size_t n, float scale, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& f : v) f = d(rng);
    return v;
}

// rows x cols floats -> rows rows of type t.
Bytes quantize_matrix(DType t, const std::vector<float>& m, int64_t rows, int64_t cols) {
    Bytes out(dtype_row_bytes(t, cols) * rows);
    for (int64_t r = 0; r < rows; r++) quantize_row(t, m.data() + r * cols, out.data() + r * dtype_row_bytes(t, cols), cols);
    return out;
}

std::vector<float> dequantize_matrix(DType t, const Bytes& m, int64_t rows, int64_t cols) {
    std::vector<float> out((size_t)rows * cols);
    for (int64_t r = 0; r < rows; r++) dequantize_row(t, m.data() + r * dtype_row_bytes(t, cols), out.data() + r * cols, cols);
    return out;
}

// One FFN layer's weights: gate/up (n_ff, dim) of type wt, down transposed (n_ff, dim) of type wt, and the same down
// values in ggml's layout (dim, n_ff) as F32 for the dense path.
struct Layer {
    DType wt;
    int64_t dim, n_ff;
    Bytes gate, up, down_t;
    std::vector<float> down_f32;  // (dim, n_ff)
    std::vector<float> x;         // (dim)
};

Layer make_layer(DType wt, int64_t dim, int64_t n_ff, uint32_t seed) {
    Layer l{wt, dim, n_ff, {}, {}, {}, {}, {}};
    const float s = 1.0f / std::sqrt((float)dim);
    l.gate = quantize_matrix(wt, randn((size_t)n_ff * dim, s, seed + 1), n_ff, dim);
    l.up = quantize_matrix(wt, randn((size_t)n_ff * dim, s, seed + 2), n_ff, dim);
    l.down_t = quantize_matrix(wt, randn((size_t)n_ff * dim, 1.0f / std::sqrt((float)n_ff), seed + 3), n_ff, dim);
    const std::vector<float> dt = dequantize_matrix(wt, l.down_t, n_ff, dim);
    l.down_f32.resize((size_t)dim * n_ff);
    for (int64_t i = 0; i < n_ff; i++)
        for (int64_t r = 0; r < dim; r++) l.down_f32[(size_t)r * n_ff + i] = dt[(size_t)i * dim + r];
    l.x = randn(dim, 1.0f, seed + 4);
    return l;
}

float max_abs(const std::vector<float>& v) {
    float m = 0.0f;
    for (float f : v) m = std::max(m, std::fabs(f));
    return m;
}

std::vector<const char*> simd_levels() {
    std::vector<const char*> out;
    for (const char* l : {"scalar", "avx2", "avx512", "avx512vnni"})
        if (dot_kernels_for(l)) out.push_back(l);
    return out;
}

struct ForceLevel {
    explicit ForceLevel(const char* l) { dot_force_simd_level(l); }
    ~ForceLevel() { dot_force_simd_level(nullptr); }
};

// sparse_down with its scratch sized exactly (sparse_down_scratch_floats) and a guard after it that must survive.
void sparse_down_guarded(DType wt, const void* w_down_t, const float* h, const int32_t* active, int64_t k, float* y,
                         int64_t dim, ThreadPool& pool) {
    const size_t n = sparse_down_scratch_floats(k, dim);
    std::vector<float> scratch(n + 1, NAN);
    scratch[n] = 12345.0f;
    sparse_down(wt, w_down_t, h, active, k, y, dim, n > 0 ? scratch.data() : nullptr, pool);
    EXPECT_EQ(scratch[n], 12345.0f) << "sparse_down wrote past its scratch (" << n << " floats)";
}

const DType kTypes[] = {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_BF16, DType::DTYPE_Q8_0, DType::DTYPE_Q4_0};

using Param = std::tuple<DType, int64_t, int64_t>;  // wt, dim, n_ff

class SparseFfn : public ::testing::TestWithParam<Param> {};

TEST_P(SparseFfn, SparseEqualsDenseWithOracle) {
    const auto [wt, dim, n_ff] = GetParam();
    const Layer l = make_layer(wt, dim, n_ff, 1234 + (uint32_t)(dim * 7 + n_ff));
    for (const char* level : simd_levels()) {
        SCOPED_TRACE(std::string("simd ") + level);
        ForceLevel force(level);
        std::vector<uint8_t> xq(dot_vec_bytes(wt, dim));
        dot_prepare_vec(wt, l.x.data(), xq.data(), dim);

        // Dense: matvec gate, matvec up, reglu, matvec down (F32 down in ggml's layout).
        ThreadPool pool1(1);
        std::vector<float> g(n_ff), u(n_ff), hd(n_ff), y_dense(dim);
        matvec(wt, l.gate.data(), xq.data(), g.data(), n_ff, dim, pool1);
        matvec(wt, l.up.data(), xq.data(), u.data(), n_ff, dim, pool1);
        reglu(hd.data(), g.data(), u.data(), n_ff);
        matvec(DType::DTYPE_F32, l.down_f32.data(), hd.data(), y_dense.data(), dim, n_ff, pool1);

        // Oracle: the true active set of the ReLU gate.
        std::vector<int32_t> active;
        for (int64_t i = 0; i < n_ff; i++)
            if (g[i] > 0.0f) active.push_back((int32_t)i);
        const int64_t k = (int64_t)active.size();
        ASSERT_GT(k, 0);
        ASSERT_LT(k, n_ff);

        const SparseGateUpWeights w{wt, l.gate.data(), l.up.data(), dim, SparseAct::SPARSE_ACT_RELU};
        std::vector<float> h_ref(k), y_ref(dim);
        sparse_gate_up_ref(w, xq.data(), active.data(), k, h_ref.data());
        sparse_down_ref(wt, l.down_t.data(), h_ref.data(), active.data(), k, y_ref.data(), dim);

        const float tol = 2e-4f * std::max(1.0f, max_abs(y_dense));
        std::vector<float> y_first;
        for (int threads : {1, 2, 3}) {
            SCOPED_TRACE("threads " + std::to_string(threads));
            ThreadPool pool(threads);
            std::vector<float> h(k, NAN), y(dim, NAN);
            sparse_gate_up(w, xq.data(), active.data(), k, h.data(), pool);
            sparse_down_guarded(wt, l.down_t.data(), h.data(), active.data(), k, y.data(), dim, pool);
            for (int64_t j = 0; j < k; j++) {
                ASSERT_NEAR(h[j], h_ref[j], 1e-5f * std::max(1.0f, std::fabs(h_ref[j]))) << "neuron " << active[j];
                ASSERT_NEAR(h[j], hd[active[j]], 1e-5f * std::max(1.0f, std::fabs(hd[active[j]])));
            }
            for (int64_t c = 0; c < dim; c++) {
                ASSERT_NEAR(y[c], y_dense[c], tol) << "y[" << c << "] vs dense";
                ASSERT_NEAR(y[c], y_ref[c], tol) << "y[" << c << "] vs reference";
            }
            // Slices of y: each element sums the neurons in list order whatever the split.
            if (y_first.empty()) y_first = y;
            else ASSERT_EQ(y, y_first);
        }
    }
}

TEST_P(SparseFfn, RandomListSiluMatchesReference) {
    // Not an oracle set: unsorted, with a duplicate, SiLU (no zero skipping in gate/up).
    const auto [wt, dim, n_ff] = GetParam();
    const Layer l = make_layer(wt, dim, n_ff, 99 + (uint32_t)n_ff);
    std::mt19937 rng(7);
    std::vector<int32_t> active;
    for (int64_t i = 0; i < n_ff; i++)
        if (rng() % 3 == 0) active.push_back((int32_t)i);
    std::shuffle(active.begin(), active.end(), rng);
    active.push_back(active.front());
    const int64_t k = (int64_t)active.size();
    for (const char* level : simd_levels()) {
        SCOPED_TRACE(std::string("simd ") + level);
        ForceLevel force(level);
        std::vector<uint8_t> xq(dot_vec_bytes(wt, dim));
        dot_prepare_vec(wt, l.x.data(), xq.data(), dim);
        const SparseGateUpWeights w{wt, l.gate.data(), l.up.data(), dim, SparseAct::SPARSE_ACT_SILU};
        std::vector<float> h_ref(k), y_ref(dim), h(k), y(dim);
        sparse_gate_up_ref(w, xq.data(), active.data(), k, h_ref.data());
        sparse_down_ref(wt, l.down_t.data(), h_ref.data(), active.data(), k, y_ref.data(), dim);
        ThreadPool pool(3);
        sparse_gate_up(w, xq.data(), active.data(), k, h.data(), pool);
        sparse_down_guarded(wt, l.down_t.data(), h.data(), active.data(), k, y.data(), dim, pool);
        for (int64_t j = 0; j < k; j++) ASSERT_NEAR(h[j], h_ref[j], 1e-5f * std::max(1.0f, std::fabs(h_ref[j])));
        const float tol = 2e-4f * std::max(1.0f, max_abs(y_ref));
        for (int64_t c = 0; c < dim; c++) ASSERT_NEAR(y[c], y_ref[c], tol) << "y[" << c << "]";
    }
}

TEST_P(SparseFfn, RandomListReluMatchesReference) {
    // A predicted list with misses: about half the gates are negative, so up rows are skipped in every block of
    // neurons, and their zeros are skipped again in sparse_down.
    const auto [wt, dim, n_ff] = GetParam();
    const Layer l = make_layer(wt, dim, n_ff, 77 + (uint32_t)n_ff);
    std::mt19937 rng(8);
    std::vector<int32_t> active;
    for (int64_t i = 0; i < n_ff; i++)
        if (rng() % 2 == 0) active.push_back((int32_t)i);
    const int64_t k = (int64_t)active.size();
    std::vector<uint8_t> xq(dot_vec_bytes(wt, dim));
    dot_prepare_vec(wt, l.x.data(), xq.data(), dim);
    const SparseGateUpWeights w{wt, l.gate.data(), l.up.data(), dim, SparseAct::SPARSE_ACT_RELU};
    std::vector<float> h_ref(k), y_ref(dim);
    sparse_gate_up_ref(w, xq.data(), active.data(), k, h_ref.data());
    sparse_down_ref(wt, l.down_t.data(), h_ref.data(), active.data(), k, y_ref.data(), dim);
    int64_t zeros = 0;
    for (float v : h_ref) zeros += v == 0.0f;
    ASSERT_GT(zeros, k / 4);
    for (int threads : {1, 3}) {
        ThreadPool pool(threads);
        std::vector<float> h(k, NAN), y(dim, NAN);
        sparse_gate_up(w, xq.data(), active.data(), k, h.data(), pool);
        sparse_down_guarded(wt, l.down_t.data(), h.data(), active.data(), k, y.data(), dim, pool);
        for (int64_t j = 0; j < k; j++) ASSERT_NEAR(h[j], h_ref[j], 1e-5f * std::max(1.0f, std::fabs(h_ref[j])));
        const float tol = 2e-4f * std::max(1.0f, max_abs(y_ref));
        for (int64_t c = 0; c < dim; c++) ASSERT_NEAR(y[c], y_ref[c], tol) << "y[" << c << "]";
    }
}

TEST_P(SparseFfn, EmptyListGivesZero) {
    const auto [wt, dim, n_ff] = GetParam();
    const Layer l = make_layer(wt, dim, n_ff, 5);
    std::vector<uint8_t> xq(dot_vec_bytes(wt, dim));
    dot_prepare_vec(wt, l.x.data(), xq.data(), dim);
    const SparseGateUpWeights w{wt, l.gate.data(), l.up.data(), dim, SparseAct::SPARSE_ACT_RELU};
    for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        float h_guard = 42.0f;
        std::vector<float> y(dim, NAN);
        sparse_gate_up(w, xq.data(), nullptr, 0, &h_guard, pool);
        sparse_down_guarded(wt, l.down_t.data(), nullptr, nullptr, 0, y.data(), dim, pool);
        EXPECT_EQ(h_guard, 42.0f);
        for (float v : y) ASSERT_EQ(v, 0.0f);
    }
}

// sparse_ffn against the two calls it replaces and against the references, for one list: h bit for bit as
// sparse_gate_up's, y within the tolerance above of sparse_down's and of the double reference, and the same bits for
// 1, 2, 3 and 7 threads. The scratch is sized exactly, with a guard after it.
void check_fused(const Layer& l, SparseAct act, const std::vector<int32_t>& active) {
    const DType wt = l.wt;
    const int64_t dim = l.dim, k = (int64_t)active.size();
    std::vector<uint8_t> xq(dot_vec_bytes(wt, dim));
    dot_prepare_vec(wt, l.x.data(), xq.data(), dim);
    const SparseGateUpWeights w{wt, l.gate.data(), l.up.data(), dim, act};
    std::vector<float> h_ref(k), y_ref(dim);
    sparse_gate_up_ref(w, xq.data(), active.data(), k, h_ref.data());
    sparse_down_ref(wt, l.down_t.data(), h_ref.data(), active.data(), k, y_ref.data(), dim);
    const float tol = 2e-4f * std::max(1.0f, max_abs(y_ref));
    const size_t n_scratch = sparse_ffn_scratch_floats(k, dim);
    ASSERT_GE(n_scratch, (size_t)dim);
    for (const char* level : simd_levels()) {
        SCOPED_TRACE(std::string("simd ") + level);
        ForceLevel force(level);
        std::vector<float> h2(k, NAN), y2(dim, NAN);
        {
            ThreadPool pool(2);
            sparse_gate_up(w, xq.data(), active.data(), k, h2.data(), pool);
            sparse_down_guarded(wt, l.down_t.data(), h2.data(), active.data(), k, y2.data(), dim, pool);
        }
        std::vector<float> y_first;
        for (int threads : {1, 2, 3, 7}) {
            SCOPED_TRACE("threads " + std::to_string(threads));
            ThreadPool pool(threads);
            std::vector<float> h(k + 1, NAN), y(dim + 1, NAN), scratch(n_scratch + 1, NAN);
            h[k] = y[dim] = scratch[n_scratch] = 12345.0f;
            sparse_ffn(w, xq.data(), wt, l.down_t.data(), active.data(), k, h.data(), y.data(), scratch.data(), pool);
            ASSERT_EQ(h[k], 12345.0f);
            ASSERT_EQ(y[dim], 12345.0f);
            ASSERT_EQ(scratch[n_scratch], 12345.0f);
            h.pop_back();
            y.pop_back();
            ASSERT_EQ(std::memcmp(h.data(), h2.data(), k * sizeof(float)), 0) << "h differs from sparse_gate_up";
            for (int64_t j = 0; j < k; j++) ASSERT_NEAR(h[j], h_ref[j], 1e-5f * std::max(1.0f, std::fabs(h_ref[j])));
            for (int64_t c = 0; c < dim; c++) {
                ASSERT_NEAR(y[c], y2[c], tol) << "y[" << c << "] vs sparse_down";
                ASSERT_NEAR(y[c], y_ref[c], tol) << "y[" << c << "] vs reference";
            }
            if (y_first.empty()) y_first = y;
            else ASSERT_EQ(std::memcmp(y.data(), y_first.data(), dim * sizeof(float)), 0) << "bits depend on threads";
        }
    }
}

TEST_P(SparseFfn, FusedOracleListMatchesTwoCalls) {
    const auto [wt, dim, n_ff] = GetParam();
    const Layer l = make_layer(wt, dim, n_ff, 1234 + (uint32_t)(dim * 7 + n_ff));
    std::vector<uint8_t> xq(dot_vec_bytes(wt, dim));
    dot_prepare_vec(wt, l.x.data(), xq.data(), dim);
    std::vector<float> g(n_ff);
    ThreadPool pool1(1);
    matvec(wt, l.gate.data(), xq.data(), g.data(), n_ff, dim, pool1);
    std::vector<int32_t> active;
    for (int64_t i = 0; i < n_ff; i++)
        if (g[i] > 0.0f) active.push_back((int32_t)i);
    check_fused(l, SparseAct::SPARSE_ACT_RELU, active);
}

TEST_P(SparseFfn, FusedRandomListsMatchTwoCalls) {
    // Unsorted with duplicates, SiLU and ReLU (misses in every chunk); and ReLU with the list sorted by gate value,
    // so that the first chunks fire no neuron at all (all-zero partials).
    const auto [wt, dim, n_ff] = GetParam();
    const Layer l = make_layer(wt, dim, n_ff, 99 + (uint32_t)n_ff);
    std::mt19937 rng(9);
    std::vector<int32_t> active;
    for (int64_t i = 0; i < n_ff; i++)
        if (rng() % 3 == 0) active.push_back((int32_t)i);
    std::shuffle(active.begin(), active.end(), rng);
    active.push_back(active.front());
    active.push_back(active[active.size() / 2]);
    if (active.size() % 2 == 0) active.push_back(active[1]);  // odd k
    {
        SCOPED_TRACE("silu, unsorted, duplicates");
        check_fused(l, SparseAct::SPARSE_ACT_SILU, active);
    }
    {
        SCOPED_TRACE("relu, unsorted, duplicates");
        check_fused(l, SparseAct::SPARSE_ACT_RELU, active);
    }
    std::vector<uint8_t> xq(dot_vec_bytes(wt, dim));
    dot_prepare_vec(wt, l.x.data(), xq.data(), dim);
    std::vector<float> g(n_ff);
    ThreadPool pool1(1);
    matvec(wt, l.gate.data(), xq.data(), g.data(), n_ff, dim, pool1);
    std::vector<int32_t> by_gate(n_ff);
    for (int64_t i = 0; i < n_ff; i++) by_gate[i] = (int32_t)i;
    std::sort(by_gate.begin(), by_gate.end(), [&](int32_t a, int32_t b) { return g[a] < g[b]; });
    ASSERT_LE(g[by_gate[31]], 0.0f);  // a whole chunk (32 neurons) that fires nothing
    SCOPED_TRACE("relu, sorted by gate");
    check_fused(l, SparseAct::SPARSE_ACT_RELU, by_gate);
}

TEST_P(SparseFfn, FusedEmptyListGivesZero) {
    const auto [wt, dim, n_ff] = GetParam();
    const Layer l = make_layer(wt, dim, n_ff, 5);
    std::vector<uint8_t> xq(dot_vec_bytes(wt, dim));
    dot_prepare_vec(wt, l.x.data(), xq.data(), dim);
    const SparseGateUpWeights w{wt, l.gate.data(), l.up.data(), dim, SparseAct::SPARSE_ACT_RELU};
    EXPECT_EQ(sparse_ffn_scratch_floats(0, dim), 0u);
    for (int threads : {1, 2, 3}) {
        ThreadPool pool(threads);
        float h_guard = 42.0f;
        std::vector<float> y(dim, NAN);
        sparse_ffn(w, xq.data(), wt, l.down_t.data(), nullptr, 0, &h_guard, y.data(), nullptr, pool);
        EXPECT_EQ(h_guard, 42.0f);
        for (float v : y) ASSERT_EQ(v, 0.0f);
    }
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
    return std::string(dtype_name(std::get<0>(info.param))) + "_dim" + std::to_string(std::get<1>(info.param)) +
           "_nff" + std::to_string(std::get<2>(info.param));
}

INSTANTIATE_TEST_SUITE_P(OddSizes, SparseFfn,
                         ::testing::Combine(::testing::ValuesIn(kTypes), ::testing::Values<int64_t>(96, 160),
                                            ::testing::Values<int64_t>(100, 333, 1031)),
                         param_name);

// sparse_ffn at other widths: 64 (two Q8_0/Q4_0 blocks, less than one reduction tile) and 4096 (a 7B row, many
// reduction tiles), odd k, ReLU and SiLU, every type.
class SparseFfnFusedWidths : public ::testing::TestWithParam<std::tuple<DType, int64_t>> {};

TEST_P(SparseFfnFusedWidths, MatchesTwoCallsAndReference) {
    const auto [wt, dim] = GetParam();
    const int64_t n_ff = dim >= 4096 ? 301 : 517;
    const Layer l = make_layer(wt, dim, n_ff, 31 + (uint32_t)dim);
    std::mt19937 rng(11);
    std::vector<int32_t> active;
    for (int64_t i = 0; i < n_ff; i++)
        if (rng() % 4 != 0) active.push_back((int32_t)i);
    if (active.size() % 2 == 0) active.pop_back();  // odd k, a partial last chunk
    for (SparseAct act : {SparseAct::SPARSE_ACT_RELU, SparseAct::SPARSE_ACT_SILU}) {
        SCOPED_TRACE(act == SparseAct::SPARSE_ACT_RELU ? "relu" : "silu");
        check_fused(l, act, active);
    }
}

INSTANTIATE_TEST_SUITE_P(Widths, SparseFfnFusedWidths,
                         ::testing::Combine(::testing::ValuesIn(kTypes), ::testing::Values<int64_t>(64, 96, 4096)),
                         [](const ::testing::TestParamInfo<std::tuple<DType, int64_t>>& info) {
                             return std::string(dtype_name(std::get<0>(info.param))) + "_dim" +
                                    std::to_string(std::get<1>(info.param));
                         });

// sparse_ffn_batch: n tokens, each with its own random set of neurons (some neurons used by no token), against
// sparse_gate_up then sparse_down per token (the same bits, for every SIMD level and thread count) and against the
// double reference.
void check_batch(const Layer& l, SparseAct act, int n, uint32_t seed) {
    const DType wt = l.wt;
    const int64_t dim = l.dim, n_ff = l.n_ff;
    const std::vector<float> xs = randn((size_t)n * dim, 1.0f, seed);
    const size_t stride = dot_vec_bytes(wt, dim);
    std::vector<uint8_t> xq(stride * n);
    for (int t = 0; t < n; t++) dot_prepare_vec(wt, xs.data() + (size_t)t * dim, xq.data() + t * stride, dim);
    std::mt19937 rng(seed);
    std::vector<int32_t> rows;
    std::vector<uint32_t> masks;
    for (int64_t i = 0; i < n_ff; i++) {
        if (rng() % 5 == 0) continue;  // in no token's set
        uint32_t m = 0;
        for (int t = 0; t < n; t++)
            if (rng() % 3 == 0) m |= 1u << t;
        rows.push_back((int32_t)i);
        masks.push_back(m);  // may be 0: listed, used by none
    }
    const int64_t k = (int64_t)rows.size();
    const SparseGateUpWeights w{wt, l.gate.data(), l.up.data(), dim, act};
    std::vector<float> h_ref(k * n), y_ref((size_t)n * dim);
    sparse_ffn_batch_ref(w, xq.data(), stride, n, wt, l.down_t.data(), rows.data(), masks.data(), k, h_ref.data(),
                         y_ref.data());
    for (const char* level : simd_levels()) {
        SCOPED_TRACE(std::string("simd ") + level);
        ForceLevel force(level);
        // Per token: its own list through the two single-token calls.
        std::vector<float> h_tok(k * n, 0.0f), y_tok((size_t)n * dim);
        {
            ThreadPool pool(2);
            for (int t = 0; t < n; t++) {
                std::vector<int32_t> active;
                std::vector<int64_t> where;
                for (int64_t j = 0; j < k; j++)
                    if (masks[j] >> t & 1u) active.push_back(rows[j]), where.push_back(j);
                std::vector<float> ht(active.size());
                const uint8_t* xt = xq.data() + t * stride;
                sparse_gate_up(w, xt, active.data(), (int64_t)active.size(), ht.data(), pool);
                sparse_down_guarded(wt, l.down_t.data(), ht.data(), active.data(), (int64_t)active.size(),
                                    y_tok.data() + (size_t)t * dim, dim, pool);
                for (size_t i = 0; i < where.size(); i++) h_tok[where[i] * n + t] = ht[i];
            }
        }
        for (int threads : {1, 2, 3, 7}) {
            SCOPED_TRACE("threads " + std::to_string(threads));
            ThreadPool pool(threads);
            std::vector<float> h(k * n + 1, NAN), y((size_t)n * dim + 1, NAN);
            h[k * n] = y[(size_t)n * dim] = 12345.0f;
            sparse_ffn_batch(w, xq.data(), stride, n, wt, l.down_t.data(), rows.data(), masks.data(), k, h.data(),
                             y.data(), pool);
            ASSERT_EQ(h[k * n], 12345.0f);
            ASSERT_EQ(y[(size_t)n * dim], 12345.0f);
            ASSERT_EQ(std::memcmp(h.data(), h_tok.data(), k * n * sizeof(float)), 0) << "h differs per token";
            ASSERT_EQ(std::memcmp(y.data(), y_tok.data(), (size_t)n * dim * sizeof(float)), 0) << "y differs per token";
            for (int64_t j = 0; j < k * n; j++)
                ASSERT_NEAR(h[j], h_ref[j], 1e-5f * std::max(1.0f, std::fabs(h_ref[j])));
            for (int t = 0; t < n; t++) {
                const float* yr = y_ref.data() + (size_t)t * dim;
                const float tol = 2e-4f * std::max(1.0f, max_abs(std::vector<float>(yr, yr + dim)));
                for (int64_t c = 0; c < dim; c++)
                    ASSERT_NEAR(y[(size_t)t * dim + c], yr[c], tol) << "token " << t << " y[" << c << "]";
            }
        }
    }
}

class SparseFfnBatch : public ::testing::TestWithParam<std::tuple<DType, int64_t>> {};

TEST_P(SparseFfnBatch, EqualsPerTokenCalls) {
    const auto [wt, dim] = GetParam();
    const Layer l = make_layer(wt, dim, dim >= 4096 ? 301 : 333, 77 + (uint32_t)dim);
    for (int n : {1, 5, 32}) {
        for (SparseAct act : {SparseAct::SPARSE_ACT_RELU, SparseAct::SPARSE_ACT_SILU}) {
            SCOPED_TRACE(std::to_string(n) + " tokens, " + (act == SparseAct::SPARSE_ACT_RELU ? "relu" : "silu"));
            check_batch(l, act, n, 500 + (uint32_t)n);
        }
    }
}

// Tokens with 512 or more listed neurons each: sparse_down cuts their lists into groups, and the batch operator
// must add them the same way for the same bits.
TEST(SparseFfnBatchGroups, LongListsEqualPerTokenCalls) {
    for (DType wt : kTypes) {
        SCOPED_TRACE(dtype_name(wt));
        const Layer l = make_layer(wt, 96, 3000, 91);
        for (int n : {1, 5}) {
            for (SparseAct act : {SparseAct::SPARSE_ACT_RELU, SparseAct::SPARSE_ACT_SILU}) {
                SCOPED_TRACE(std::to_string(n) + " tokens, " + (act == SparseAct::SPARSE_ACT_RELU ? "relu" : "silu"));
                check_batch(l, act, n, 600 + (uint32_t)n);
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Widths, SparseFfnBatch,
                         ::testing::Combine(::testing::ValuesIn(kTypes), ::testing::Values<int64_t>(96, 4096)),
                         [](const ::testing::TestParamInfo<std::tuple<DType, int64_t>>& info) {
                             return std::string(dtype_name(std::get<0>(info.param))) + "_dim" +
                                    std::to_string(std::get<1>(info.param));
                         });

TEST(SparseFfnBatchEdges, EmptyListGivesZeroAndTokenCountIsChecked) {
    const Layer l = make_layer(DType::DTYPE_F16, 64, 40, 3);
    const SparseGateUpWeights w{l.wt, l.gate.data(), l.up.data(), l.dim, SparseAct::SPARSE_ACT_RELU};
    const size_t stride = dot_vec_bytes(l.wt, l.dim);
    std::vector<uint8_t> xq(stride * 33);
    ThreadPool pool(2);
    float h_guard = 42.0f;
    std::vector<float> y(3 * 64, NAN);
    sparse_ffn_batch(w, xq.data(), stride, 3, l.wt, l.down_t.data(), nullptr, nullptr, 0, &h_guard, y.data(), pool);
    EXPECT_EQ(h_guard, 42.0f);
    for (float v : y) ASSERT_EQ(v, 0.0f);
    std::vector<float> big(33 * 64);
    for (int n : {0, 33}) {
        try {
            sparse_ffn_batch(w, xq.data(), stride, n, l.wt, l.down_t.data(), nullptr, nullptr, 0, &h_guard,
                             big.data(), pool);
            FAIL() << n << " tokens accepted";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(std::to_string(n) + " tokens, expected 1 to 32"), std::string::npos)
                << e.what();
        }
    }
}

// The element-by-element transposition sparse_down_transpose used to do, kept as the reference for its output:
// the whole matrix dequantized to floats, then each neuron's column gathered and quantized with quantize_row.
Bytes transpose_ref(DType src_t, const Bytes& src, DType dst_t, int64_t dim, int64_t n_ff) {
    std::vector<float> full((size_t)dim * n_ff);
    const size_t src_row = dtype_row_bytes(src_t, n_ff), dst_row = dtype_row_bytes(dst_t, dim);
    for (int64_t r = 0; r < dim; r++) dequantize_row(src_t, src.data() + r * src_row, full.data() + r * n_ff, n_ff);
    Bytes out(dst_row * n_ff);
    std::vector<float> col(dim);
    for (int64_t i = 0; i < n_ff; i++) {
        for (int64_t r = 0; r < dim; r++) col[r] = full[(size_t)r * n_ff + i];
        quantize_row(dst_t, col.data(), out.data() + i * dst_row, dim);
    }
    return out;
}

TEST(SparseFfnTranspose, MatchesDirectConversion) {
    ThreadPool pool(2);
    const int64_t dim = 96, n_ff = 128;  // n_ff a multiple of 32 so quantized sources work too
    const std::vector<float> down = randn((size_t)dim * n_ff, 0.1f, 11);  // (dim, n_ff)
    std::vector<float> down_t((size_t)n_ff * dim);
    for (int64_t r = 0; r < dim; r++)
        for (int64_t i = 0; i < n_ff; i++) down_t[(size_t)i * dim + r] = down[(size_t)r * n_ff + i];
    for (DType t : kTypes) {
        SCOPED_TRACE(dtype_name(t));
        // F32 source -> any type: identical to quantizing the transposed floats directly.
        const Bytes expect = quantize_matrix(t, down_t, n_ff, dim);
        Bytes got(expect.size());
        sparse_down_transpose(DType::DTYPE_F32, down.data(), t, got.data(), dim, n_ff, pool);
        EXPECT_EQ(got, expect);
        // Same type in and out is exact for F32/F16/BF16 (a pure transposition).
        if (dtype_block_elems(t) == 1) {
            const Bytes src = quantize_matrix(t, down, dim, n_ff);
            Bytes got2(expect.size());
            sparse_down_transpose(t, src.data(), t, got2.data(), dim, n_ff, pool);
            EXPECT_EQ(got2, expect);
        }
    }
    Bytes out(dtype_row_bytes(DType::DTYPE_Q8_0, 96) * 100);
    std::vector<float> odd((size_t)96 * 100);
    EXPECT_THROW(sparse_down_transpose(DType::DTYPE_Q8_0, odd.data(), DType::DTYPE_F32, out.data(), 96, 100, pool),
                 std::invalid_argument);
    EXPECT_THROW(sparse_down_transpose(DType::DTYPE_F32, odd.data(), DType::DTYPE_Q8_0, out.data(), 100, 96, pool),
                 std::invalid_argument);
}

// Every (source, destination) type pair at odd shapes and thread counts: byte for byte the old output. Shapes cross
// the tile edges (32 neurons, 64 rows); n_ff 333 for float sources, 352 (a block multiple) for quantized ones.
TEST(SparseFfnTranspose, EqualsElementByElementForEveryTypePair) {
    for (int64_t dim : {96, 160, 1056}) {
        for (DType src_t : kTypes) {
            const int64_t n_ff = dtype_block_elems(src_t) == 1 ? 333 : 352;
            const Bytes src = quantize_matrix(src_t, randn((size_t)dim * n_ff, 0.5f, 17 + (uint32_t)dim), dim, n_ff);
            for (DType dst_t : kTypes) {
                SCOPED_TRACE(std::string(dtype_name(src_t)) + " -> " + dtype_name(dst_t) + ", dim " +
                             std::to_string(dim));
                const Bytes expect = transpose_ref(src_t, src, dst_t, dim, n_ff);
                for (int threads : {1, 2, 3}) {
                    ThreadPool pool(threads);
                    Bytes got(expect.size(), 0xcd);
                    sparse_down_transpose(src_t, src.data(), dst_t, got.data(), dim, n_ff, pool);
                    ASSERT_EQ(got, expect) << threads << " threads";
                }
            }
        }
    }
}

// The bit-copying path for F16/BF16 must do what the float round trip does to every one of the 65536 patterns
// (NaNs come out quiet, everything else unchanged); F32 copies bits, NaN payloads included.
TEST(SparseFfnTranspose, EveryHalfPatternAsTheFloatRoundTrip) {
    ThreadPool pool(3);
    const int64_t dim = 256, n_ff = 256;
    for (DType t : {DType::DTYPE_F16, DType::DTYPE_BF16, DType::DTYPE_F32}) {
        SCOPED_TRACE(dtype_name(t));
        Bytes src(dtype_row_bytes(t, n_ff) * dim);
        for (uint32_t v = 0; v < 65536; v++) {
            if (t == DType::DTYPE_F32) {
                const uint32_t bits = (v << 16) | (v * 0x9E37u & 0xffffu);  // every exponent, NaN payloads too
                std::memcpy(&src[4 * v], &bits, 4);
            } else {
                const uint16_t bits = (uint16_t)v;
                std::memcpy(&src[2 * v], &bits, 2);
            }
        }
        const Bytes expect = transpose_ref(t, src, t, dim, n_ff);
        Bytes got(expect.size());
        sparse_down_transpose(t, src.data(), t, got.data(), dim, n_ff, pool);
        ASSERT_EQ(got, expect);
    }
}

// ---- axpy kernels: y += a * w ----

// Row segments of every type at odd lengths, unaligned starts, and a range of scales.
struct AxpyCase {
    std::vector<Bytes> rows;  // each row stored from byte 3 of its buffer (rows need no alignment)
    std::vector<float> a, y0;
    std::vector<std::vector<float>> w;  // the rows dequantized (what the scalar table uses)
};

AxpyCase make_axpy(DType t, int64_t n_rows, int64_t n, uint32_t seed) {
    AxpyCase c;
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> ua(-2.0f, 2.0f);
    for (int64_t r = 0; r < n_rows; r++) {
        const std::vector<float> f = randn((size_t)n, r % 3 == 0 ? 0.01f : 1.0f, seed + 31 * (uint32_t)r);
        Bytes b(dtype_row_bytes(t, n) + 3);
        quantize_row(t, f.data(), b.data() + 3, n);
        std::vector<float> w((size_t)n);
        dot_kernels_portable()->dequantize_row(t, b.data() + 3, w.data(), n);
        c.rows.push_back(std::move(b));
        c.w.push_back(std::move(w));
        c.a.push_back(r % 5 == 4 ? 0.0f : ua(rng));
    }
    c.y0 = randn((size_t)n, 1.0f, seed + 7);
    return c;
}

std::vector<int64_t> axpy_sizes(DType t) {
    if (dtype_block_elems(t) == 1) return {1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 100, 160, 4097};
    return {32, 64, 96, 160, 224, 288, 4096};
}

// Every SIMD level's axpy_row against the scalar table. Tolerance: the scalar table rounds a * w, then the sum;
// the SIMD tables round once (one FMA), after rounding a * d for Q8_0/Q4_0. Each rounding is within FLT_EPSILON / 2
// of its result, so the two differ by at most 2 * FLT_EPSILON * (|y| + |a w|) per element, for every type (the
// weights themselves dequantize exactly in both). A wrong scale, nibble order or element is off by far more.
TEST(SparseFfnAxpy, AxpyRowMatchesScalarTable) {
    for (DType t : kTypes) {
        for (int64_t n : axpy_sizes(t)) {
            const AxpyCase c = make_axpy(t, 1, n, 100 + (uint32_t)n);
            std::vector<float> want = c.y0;
            dot_kernels_portable()->axpy_row(t, c.rows[0].data() + 3, c.a[0], want.data(), n);
            for (const char* level : simd_levels()) {
                SCOPED_TRACE(std::string(dtype_name(t)) + " n " + std::to_string(n) + " simd " + level);
                std::vector<float> got = c.y0;
                got.push_back(12345.0f);  // guard: nothing past n is written
                dot_kernels_for(level)->axpy_row(t, c.rows[0].data() + 3, c.a[0], got.data(), n);
                ASSERT_EQ(got[n], 12345.0f);
                for (int64_t i = 0; i < n; i++) {
                    const double bound = std::fabs(c.y0[i]) + std::fabs((double)c.a[0] * c.w[0][i]);
                    ASSERT_NEAR(got[i], want[i], 2.0 * FLT_EPSILON * bound) << "y[" << i << "]";
                }
            }
        }
    }
}

// axpy_rows over 1..70 rows (groups of 8, every tail, several groups prefetching ahead) equals that many axpy_row
// calls bit for bit at each level: the property that makes sparse_down's result independent of how rows are grouped
// and how y is split across threads. Against the scalar table each row adds its rounding: the bound grows with the
// number of rows.
TEST(SparseFfnAxpy, AxpyRowsEqualsRowByRow) {
    for (DType t : kTypes) {
        for (int64_t n : {(int64_t)32, (int64_t)160, (int64_t)4096}) {
            for (int64_t n_rows : {1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 70}) {
                const AxpyCase c = make_axpy(t, n_rows, n, 200 + (uint32_t)(n + n_rows));
                std::vector<const void*> rows;
                for (const Bytes& b : c.rows) rows.push_back(b.data() + 3);
                std::vector<float> scalar = c.y0;
                dot_kernels_portable()->axpy_rows(t, rows.data(), c.a.data(), n_rows, scalar.data(), n);
                for (const char* level : simd_levels()) {
                    SCOPED_TRACE(std::string(dtype_name(t)) + " n " + std::to_string(n) + " rows " +
                                 std::to_string(n_rows) + " simd " + level);
                    const DotKernels* kern = dot_kernels_for(level);
                    std::vector<float> one = c.y0, many = c.y0;
                    for (int64_t r = 0; r < n_rows; r++) kern->axpy_row(t, rows[r], c.a[r], one.data(), n);
                    kern->axpy_rows(t, rows.data(), c.a.data(), n_rows, many.data(), n);
                    ASSERT_EQ(many, one);
                    for (int64_t i = 0; i < n; i++) {
                        double bound = std::fabs(c.y0[i]);
                        for (int64_t r = 0; r < n_rows; r++) bound += std::fabs((double)c.a[r] * c.w[r][i]);
                        ASSERT_NEAR(many[i], scalar[i], 2.0 * (double)n_rows * FLT_EPSILON * bound) << "y[" << i << "]";
                    }
                }
            }
        }
    }
}

// dot_row_prefetch only changes what is prefetched: the same bits as dot_row, with `next` before or after w.
TEST(SparseFfnGateUp, DotRowPrefetchEqualsDotRow) {
    for (DType t : kTypes) {
        for (int64_t n : axpy_sizes(t)) {
            if (n % dtype_block_elems(t) != 0) continue;
            const AxpyCase c = make_axpy(t, 3, n, 300 + (uint32_t)n);
            std::vector<uint8_t> xq(dot_vec_bytes(t, n));
            dot_prepare_vec(t, c.y0.data(), xq.data(), n);
            for (const char* level : simd_levels()) {
                SCOPED_TRACE(std::string(dtype_name(t)) + " n " + std::to_string(n) + " simd " + level);
                const DotKernels* kern = dot_kernels_for(level);
                const float want = kern->dot_row(t, c.rows[1].data() + 3, xq.data(), n);
                for (int other : {0, 2}) {
                    const float got =
                        kern->dot_row_prefetch(t, c.rows[1].data() + 3, c.rows[other].data() + 3, xq.data(), n);
                    ASSERT_EQ(std::memcmp(&got, &want, 4), 0) << got << " vs " << want;
                }
            }
        }
    }
}

// dot_row_xs (where a table has it): one row against 1..17 activation vectors (groups of 8 and partial groups),
// each result the same bits as dot_row's, for every type and length (tails included).
TEST(SparseFfnGateUp, DotRowXsEqualsDotRow) {
    int tables = 0;
    for (const char* level : simd_levels()) tables += dot_kernels_for(level)->dot_row_xs != nullptr;
    if (tables == 0) GTEST_SKIP() << "no SIMD table with dot_row_xs on this CPU (AVX-512): nothing to test";
    for (DType t : kTypes) {
        for (int64_t n : axpy_sizes(t)) {
            if (n % dtype_block_elems(t) != 0) continue;
            const AxpyCase c = make_axpy(t, 3, n, 700 + (uint32_t)n);
            const size_t stride = dot_vec_bytes(t, n);
            std::vector<uint8_t> xq(stride * 17);
            for (int i = 0; i < 17; i++) {
                const std::vector<float> x = randn((size_t)n, 1.0f, 900 + (uint32_t)i);
                dot_prepare_vec(t, x.data(), xq.data() + i * stride, n);
            }
            for (const char* level : simd_levels()) {
                const DotKernels* kern = dot_kernels_for(level);
                if (!kern->dot_row_xs) continue;
                for (int n_x : {1, 2, 3, 5, 8, 9, 15, 17}) {  // full and partial groups of 4 and of 8
                    SCOPED_TRACE(std::string(dtype_name(t)) + " n " + std::to_string(n) + " simd " + level + ", " +
                                 std::to_string(n_x) + " vectors");
                    std::vector<const void*> xs(n_x);
                    for (int i = 0; i < n_x; i++) xs[i] = xq.data() + ((i * 5) % 17) * stride;  // any order
                    std::vector<float> ys(n_x + 1, NAN);
                    ys[n_x] = 12345.0f;
                    kern->dot_row_xs(t, c.rows[1].data() + 3, c.rows[2].data() + 3, xs.data(), n_x, ys.data(), n);
                    ASSERT_EQ(ys[n_x], 12345.0f);
                    for (int i = 0; i < n_x; i++) {
                        const float want = kern->dot_row(t, c.rows[1].data() + 3, xs[i], n);
                        ASSERT_EQ(std::memcmp(&ys[i], &want, 4), 0) << "vector " << i << ": " << ys[i] << " vs " << want;
                    }
                }
            }
        }
    }
}

// dot_rows_gather (where a table has it): 0..11 scattered rows (groups of 4 and partial groups, rows repeated, each
// prefetching another), each result the same bits as dot_row's, for every type and length (tails included).
TEST(SparseFfnGateUp, DotRowsGatherEqualsDotRow) {
    int tables = 0;
    for (const char* level : simd_levels()) tables += dot_kernels_for(level)->dot_rows_gather != nullptr;
    if (tables == 0) GTEST_SKIP() << "no SIMD table with dot_rows_gather on this CPU (AVX-512): nothing to test";
    for (DType t : kTypes) {
        for (int64_t n : axpy_sizes(t)) {
            if (n % dtype_block_elems(t) != 0) continue;
            const AxpyCase c = make_axpy(t, 7, n, 1300 + (uint32_t)n);
            std::vector<uint8_t> xq(dot_vec_bytes(t, n));
            const std::vector<float> x = randn((size_t)n, 1.0f, 1400 + (uint32_t)n);
            dot_prepare_vec(t, x.data(), xq.data(), n);
            for (const char* level : simd_levels()) {
                const DotKernels* kern = dot_kernels_for(level);
                if (!kern->dot_rows_gather) continue;
                for (int n_rows : {0, 1, 3, 4, 5, 8, 11}) {
                    SCOPED_TRACE(std::string(dtype_name(t)) + " n " + std::to_string(n) + " simd " + level + ", " +
                                 std::to_string(n_rows) + " rows");
                    std::vector<const void*> rows(n_rows), nexts(n_rows);
                    for (int i = 0; i < n_rows; i++) {
                        rows[i] = c.rows[(i * 3) % 7].data() + 3;  // any order, some rows twice
                        nexts[i] = c.rows[(i * 3 + 1) % 7].data() + 3;
                    }
                    std::vector<float> ys(n_rows + 1, NAN);
                    ys[n_rows] = 12345.0f;
                    kern->dot_rows_gather(t, rows.data(), nexts.data(), xq.data(), ys.data(), n_rows, n);
                    ASSERT_EQ(ys[n_rows], 12345.0f);
                    for (int i = 0; i < n_rows; i++) {
                        const float want = kern->dot_row(t, rows[i], xq.data(), n);
                        ASSERT_EQ(std::memcmp(&ys[i], &want, 4), 0) << "row " << i << ": " << ys[i] << " vs " << want;
                    }
                }
            }
        }
    }
}

TEST(SparseFfnAxpy, ZeroRowsLeaveYAlone) {
    for (const char* level : simd_levels()) {
        std::vector<float> y = {1.0f, 2.0f};
        dot_kernels_for(level)->axpy_rows(DType::DTYPE_F32, nullptr, nullptr, 0, y.data(), 2);
        EXPECT_EQ(y, (std::vector<float>{1.0f, 2.0f})) << level;
    }
}

// sparse_down split many ways, bit-identical for 1..5 threads at each level and close to the double reference (with
// the bound of the test above: k roundings per element). Zeros in h (rows skipped) and a duplicate in every case.
//   - a 7B-like width: more than one y sub-slice per item (dim > 4096), the list in two groups;
//   - a narrow row and a long list: four groups, each longer than one batch of rows (512).
void check_down_thread_invariant(int64_t dim, int64_t n_ff, int64_t want_groups) {
    for (DType wt : kTypes) {
        const Bytes down_t =
            quantize_matrix(wt, randn((size_t)n_ff * dim, 1.0f / std::sqrt((float)n_ff), 41), n_ff, dim);
        std::mt19937 rng(43);
        std::vector<int32_t> active;
        for (int64_t i = 0; i < n_ff; i++)
            if (rng() % 5 != 0) active.push_back((int32_t)i);
        active.push_back(active[3]);
        const int64_t k = (int64_t)active.size();
        ASSERT_EQ(sparse_down_groups(k), want_groups) << k << " neurons";
        std::vector<float> h = randn((size_t)k, 1.0f, 44);
        for (int64_t j = 0; j < k; j += 7) h[j] = 0.0f;
        std::vector<float> y_ref(dim);
        sparse_down_ref(wt, down_t.data(), h.data(), active.data(), k, y_ref.data(), dim);
        // sum_j |h_j w_j| per element, for the rounding bound
        std::vector<double> mag(dim, 0.0);
        std::vector<float> row(dim);
        for (int64_t j = 0; j < k; j++) {
            dequantize_row(wt, down_t.data() + (size_t)active[j] * dtype_row_bytes(wt, dim), row.data(), dim);
            for (int64_t c = 0; c < dim; c++) mag[c] += std::fabs((double)h[j] * row[c]);
        }
        for (const char* level : simd_levels()) {
            SCOPED_TRACE(std::string(dtype_name(wt)) + " simd " + level);
            ForceLevel force(level);
            std::vector<float> first;
            for (int threads = 1; threads <= 5; threads++) {
                ThreadPool pool(threads);
                std::vector<float> y(dim, NAN);
                sparse_down_guarded(wt, down_t.data(), h.data(), active.data(), k, y.data(), dim, pool);
                if (first.empty()) {
                    first = y;
                    for (int64_t c = 0; c < dim; c++)
                        ASSERT_NEAR(y[c], y_ref[c], 2.0 * (double)k * FLT_EPSILON * mag[c]) << "y[" << c << "]";
                } else {
                    ASSERT_EQ(y, first) << threads << " threads";
                }
            }
        }
    }
}

TEST(SparseFfnDown, ThreadCountInvariantAtWideRows) { check_down_thread_invariant(4256, 700, 2); }

TEST(SparseFfnDown, ThreadCountInvariantWithFourGroups) { check_down_thread_invariant(96, 5000, 4); }

TEST(SparseFfnDown, GroupsFollowTheListLength) {
    EXPECT_EQ(sparse_down_groups(0), 1);
    EXPECT_EQ(sparse_down_groups(511), 1);
    EXPECT_EQ(sparse_down_scratch_floats(511, 4096), 0u);  // one group adds straight into y
    EXPECT_EQ(sparse_down_groups(512), 2);
    EXPECT_EQ(sparse_down_scratch_floats(512, 4096), 2u * 4096);
    EXPECT_EQ(sparse_down_groups(1100), 4);
    EXPECT_EQ(sparse_down_groups(1 << 20), 4);
    EXPECT_EQ(sparse_down_scratch_floats(1 << 20, 8192), 4u * 8192);
}

TEST(SparseFfnCheck, OutOfRangeIndexThrowsNamingIt) {
    const std::vector<int32_t> ok = {0, 5, 99};
    EXPECT_NO_THROW(sparse_ffn_check_active(ok.data(), 3, 100));
    const std::vector<int32_t> high = {0, 100};
    const std::vector<int32_t> neg = {-1};
    EXPECT_THROW(sparse_ffn_check_active(neg.data(), 1, 100), std::out_of_range);
    try {
        sparse_ffn_check_active(high.data(), 2, 100);
        FAIL() << "expected std::out_of_range";
    } catch (const std::out_of_range& e) {
        EXPECT_NE(std::string(e.what()).find("entry 1 is neuron 100"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace ember
