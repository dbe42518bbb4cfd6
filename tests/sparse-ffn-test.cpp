// Sparse FFN operators: "sparse equals dense" (DESIGN.md) with an oracle active set, references vs SIMD paths,
// thread-count invariance, empty lists, the transposition helper and the active-list check.
#include "kernels-cpu/sparse-ffn.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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
    for (const char* l : {"scalar", "avx2", "avx512"})
        if (dot_kernels_for(l)) out.push_back(l);
    return out;
}

struct ForceLevel {
    explicit ForceLevel(const char* l) { dot_force_simd_level(l); }
    ~ForceLevel() { dot_force_simd_level(nullptr); }
};

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
            sparse_down(wt, l.down_t.data(), h.data(), active.data(), k, y.data(), dim, pool);
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
        sparse_down(wt, l.down_t.data(), h.data(), active.data(), k, y.data(), dim, pool);
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
        sparse_down(wt, l.down_t.data(), nullptr, nullptr, 0, y.data(), dim, pool);
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

TEST(SparseFfnTranspose, MatchesDirectConversion) {
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
        sparse_down_transpose(DType::DTYPE_F32, down.data(), t, got.data(), dim, n_ff);
        EXPECT_EQ(got, expect);
        // Same type in and out is exact for F32/F16/BF16 (a pure transposition).
        if (dtype_block_elems(t) == 1) {
            const Bytes src = quantize_matrix(t, down, dim, n_ff);
            Bytes got2(expect.size());
            sparse_down_transpose(t, src.data(), t, got2.data(), dim, n_ff);
            EXPECT_EQ(got2, expect);
        }
    }
    Bytes out(dtype_row_bytes(DType::DTYPE_Q8_0, 96) * 100);
    std::vector<float> odd((size_t)96 * 100);
    EXPECT_THROW(sparse_down_transpose(DType::DTYPE_Q8_0, odd.data(), DType::DTYPE_F32, out.data(), 96, 100),
                 std::invalid_argument);
    EXPECT_THROW(sparse_down_transpose(DType::DTYPE_F32, odd.data(), DType::DTYPE_Q8_0, out.data(), 100, 96),
                 std::invalid_argument);
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
