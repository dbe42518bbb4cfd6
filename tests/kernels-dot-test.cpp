// dot.h: every SIMD level's dot_row / dot_rows against dot_row_ref on seeded random inputs.
// Q8_0/Q4_0: equal bit for bit (same integer block sums, same float operations in the same order).
// F32/F16/BF16: |simd - ref| <= tol * sum_i |w_i x_i| (ref accumulates in double; tol in the test parameter).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels-cpu/dot-isa.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/quant.h"

namespace ember {
namespace {

struct DotCase {
    DType type;
    double tol;  // relative to sum |w x|; 0 = exact
};

const DotCase kCases[] = {
    {DType::DTYPE_F32, 1e-5},  // float accumulation over many partial sums; measured error is ~1e-7
    {DType::DTYPE_F16, 1e-5},  // weights convert exactly: only the accumulation rounds
    {DType::DTYPE_BF16, 1e-5},
    {DType::DTYPE_Q8_0, 0.0},
    {DType::DTYPE_Q4_0, 0.0},
};

std::vector<float> randn(int64_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, scale);
    std::vector<float> v((size_t)n);
    for (auto& x : v) x = nd(rng);
    return v;
}

// Rows of type t quantized from random floats, with `stride` bytes between rows (>= row bytes).
std::vector<uint8_t> make_rows(DType t, int64_t rows, int64_t n, size_t stride, uint32_t seed) {
    std::vector<uint8_t> w(stride * rows + 64, 0xcd);
    for (int64_t r = 0; r < rows; r++) {
        const auto f = randn(n, seed + (uint32_t)r * 7919);
        quantize_row(t, f.data(), w.data() + r * stride, n);
    }
    return w;
}

std::vector<uint8_t> prepare(DType t, const std::vector<float>& x) {
    std::vector<uint8_t> xq(dot_vec_bytes(t, (int64_t)x.size()));
    dot_prepare_vec(t, x.data(), xq.data(), (int64_t)x.size());
    return xq;
}

double abs_dot(DType t, const void* w, const std::vector<float>& x) {
    std::vector<float> wf(x.size());
    dot_kernels_portable()->dequantize_row(t, w, wf.data(), (int64_t)x.size());
    double s = 0.0;
    for (size_t i = 0; i < x.size(); i++) s += std::fabs((double)wf[i] * x[i]);
    return s;
}

class KernelsDot : public ::testing::TestWithParam<std::tuple<DotCase, std::string>> {
protected:
    void SetUp() override {
        kernels_ = dot_kernels_for(std::get<1>(GetParam()).c_str());
        if (!kernels_) GTEST_SKIP() << std::get<1>(GetParam()) << " not supported on this CPU";
    }
    const DotKernels* kernels_ = nullptr;
};

std::vector<int64_t> sizes(DType t) {
    if (dtype_block_elems(t) == 1) return {1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 100, 127, 4096, 4097, 11008};
    return {32, 64, 96, 160, 224, 256, 288, 480, 4096, 11008};
}

TEST_P(KernelsDot, DotRowMatchesReference) {
    const DotCase c = std::get<0>(GetParam());
    for (int64_t n : sizes(c.type)) {
        for (uint32_t seed = 0; seed < 3; seed++) {
            const auto w = make_rows(c.type, 1, n, dtype_row_bytes(c.type, n), 100 + seed);
            const auto x = randn(n, 200 + seed + (uint32_t)n, seed == 2 ? 1e-3f : 1.0f);
            const auto xq = prepare(c.type, x);
            const float ref = dot_row_ref(c.type, w.data(), xq.data(), n);
            const float got = kernels_->dot_row(c.type, w.data(), xq.data(), n);
            if (c.tol == 0.0) {
                ASSERT_EQ(got, ref) << dtype_name(c.type) << " n=" << n;
            } else {
                ASSERT_LE(std::fabs((double)got - ref), c.tol * abs_dot(c.type, w.data(), x) + 1e-30)
                    << dtype_name(c.type) << " n=" << n << " got " << got << " ref " << ref;
            }
        }
    }
}

TEST_P(KernelsDot, DotRowsMatchesReference) {
    const DotCase c = std::get<0>(GetParam());
    // 96: only the last-blocks loop; 256: only 8-block steps; 288: both, the rows' sums passing from vector lanes to
    // the scalar loop
    for (int64_t n : {dtype_block_elems(c.type) == 1 ? (int64_t)33 : (int64_t)96, (int64_t)256, (int64_t)288,
                      (int64_t)4096}) {
        for (int64_t rows : {1, 2, 3, 4, 5, 7, 8, 9, 13}) {
            for (size_t pad : {(size_t)0, (size_t)18}) {  // a stride with padding after each row
                const size_t stride = dtype_row_bytes(c.type, n) + pad;
                const auto w = make_rows(c.type, rows, n, stride, 7 + (uint32_t)rows);
                const auto x = randn(n, 300 + (uint32_t)rows);
                const auto xq = prepare(c.type, x);
                std::vector<float> y((size_t)rows + 1, 123.0f);
                kernels_->dot_rows(c.type, w.data(), stride, xq.data(), y.data(), rows, n);
                ASSERT_EQ(y[rows], 123.0f) << "wrote past y";
                for (int64_t r = 0; r < rows; r++) {
                    const uint8_t* wr = w.data() + r * stride;
                    const float ref = dot_row_ref(c.type, wr, xq.data(), n);
                    if (c.tol == 0.0) {
                        ASSERT_EQ(y[r], ref) << dtype_name(c.type) << " n=" << n << " row " << r << "/" << rows;
                    } else {
                        ASSERT_LE(std::fabs((double)y[r] - ref), c.tol * abs_dot(c.type, wr, x))
                            << dtype_name(c.type) << " n=" << n << " row " << r << "/" << rows;
                    }
                    // dot_rows and dot_row agree exactly (same code per row) for the quantized types
                    if (c.tol == 0.0) {
                        ASSERT_EQ(y[r], kernels_->dot_row(c.type, wr, xq.data(), n));
                    }
                }
            }
        }
    }
}

// Weights from raw random bytes (any int8 incl. -128, any nibble, random finite scales) against random
// activations: the integer paths must not saturate or mis-sign anywhere.
class KernelsDotBits : public ::testing::TestWithParam<std::tuple<DType, std::string>> {
protected:
    void SetUp() override {
        kernels_ = dot_kernels_for(std::get<1>(GetParam()).c_str());
        if (!kernels_) GTEST_SKIP() << std::get<1>(GetParam()) << " not supported on this CPU";
    }
    const DotKernels* kernels_ = nullptr;
};

TEST_P(KernelsDotBits, QuantizedRandomBitsExact) {
    const DotCase c = {std::get<0>(GetParam()), 0.0};
    std::mt19937 rng(77);
    for (int64_t n : {32, 256, 4096}) {
        const int64_t nb = n / 32;
        std::vector<uint8_t> w(dtype_row_bytes(c.type, n));
        for (auto& b : w) b = (uint8_t)rng();
        const size_t bb = dtype_block_bytes(c.type);
        for (int64_t b = 0; b < nb; b++) {
            const uint16_t d = (uint16_t)(rng() % 0x7800);  // finite, up to ~2^14
            std::memcpy(w.data() + b * bb, &d, 2);
        }
        std::vector<block_q8_0> xq(nb);
        for (auto& blk : xq) {
            blk.d = (uint16_t)(0x1000 + rng() % 0x2000);
            for (auto& q : blk.qs) q = (int8_t)((int)(rng() % 255) - 127);  // the quantizer's range
        }
        const float ref = dot_row_ref(c.type, w.data(), xq.data(), n);
        ASSERT_EQ(kernels_->dot_row(c.type, w.data(), xq.data(), n), ref) << n;
        float y[2];
        std::vector<uint8_t> w2(w);
        w2.insert(w2.end(), w.begin(), w.end());
        kernels_->dot_rows(c.type, w2.data(), w.size(), xq.data(), y, 2, n);
        ASSERT_EQ(y[0], ref);
        ASSERT_EQ(y[1], ref);
    }
}

std::string name(const ::testing::TestParamInfo<std::tuple<DotCase, std::string>>& info) {
    return std::string(dtype_name(std::get<0>(info.param).type)) + "_" + std::get<1>(info.param);
}

INSTANTIATE_TEST_SUITE_P(QuantTypes, KernelsDotBits,
                         ::testing::Combine(::testing::Values(DType::DTYPE_Q8_0, DType::DTYPE_Q4_0),
                                            ::testing::Values(std::string("scalar"), std::string("avx2"),
                                                              std::string("avx512"), std::string("avx512vnni"))),
                         [](const ::testing::TestParamInfo<std::tuple<DType, std::string>>& info) {
                             return std::string(dtype_name(std::get<0>(info.param))) + "_" + std::get<1>(info.param);
                         });

INSTANTIATE_TEST_SUITE_P(AllTypes, KernelsDot,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(std::string("scalar"), std::string("avx2"),
                                                              std::string("avx512"), std::string("avx512vnni"))),
                         name);

// The prefetch level only decides which cache the weight bytes wait in: every table gives the same bits at L1 and L2,
// for every kernel that prefetches.
class KernelsDotPrefetch : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        kernels_ = dot_kernels_for(GetParam().c_str());
        if (!kernels_) GTEST_SKIP() << GetParam() << " not supported on this CPU";
        saved_ = dot_prefetch_level();
    }
    void TearDown() override {
        if (kernels_) dot_set_prefetch_level(saved_);
    }
    const DotKernels* kernels_ = nullptr;
    PrefetchLevel saved_ = PrefetchLevel::PREFETCH_L1;
};

// Every prefetching kernel of one table on the same inputs, results as raw floats in order.
std::vector<float> prefetching_results(const DotKernels* k, DType t, int64_t n) {
    const int64_t rows = 9;
    const size_t stride = dtype_row_bytes(t, n) + 32;
    const auto w = make_rows(t, rows, n, stride, 11);
    const auto x = randn(n, 12), x2 = randn(n, 13), x3 = randn(n, 14);
    const auto xq = prepare(t, x), xq2 = prepare(t, x2), xq3 = prepare(t, x3);
    std::vector<float> out((size_t)rows);
    k->dot_rows(t, w.data(), stride, xq.data(), out.data(), rows, n);
    const uint8_t* row[rows];
    const uint8_t* next[rows];
    for (int64_t r = 0; r < rows; r++) {
        row[r] = w.data() + (size_t)((r * 5) % rows) * stride;  // gathered out of order
        next[r] = w.data() + (size_t)(((r + 1) * 5) % rows) * stride;
    }
    for (int64_t r = 0; r < rows; r++) out.push_back(k->dot_row_prefetch(t, row[r], next[r], xq.data(), n));
    if (k->dot_rows_gather) {
        std::vector<float> g((size_t)rows);
        k->dot_rows_gather(t, (const void* const*)row, (const void* const*)next, xq.data(), g.data(), rows, n);
        out.insert(out.end(), g.begin(), g.end());
    }
    if (k->dot_row_xs) {
        const void* xs[3] = {xq.data(), xq2.data(), xq3.data()};
        float ys[3];
        k->dot_row_xs(t, row[0], next[0], xs, 3, ys, n);
        out.insert(out.end(), ys, ys + 3);
    }
    std::vector<float> a((size_t)rows), y = randn(n, 15);
    for (int64_t r = 0; r < rows; r++) a[r] = 0.25f * (float)(r + 1) - 1.0f;
    k->axpy_rows(t, (const void* const*)row, a.data(), rows, y.data(), n);
    out.insert(out.end(), y.begin(), y.end());
    return out;
}

TEST_P(KernelsDotPrefetch, SameBitsAtEitherLevel) {
    dot_set_prefetch_level(PrefetchLevel::PREFETCH_L1);
    const DotKernels* k1 = dot_kernels_for(GetParam().c_str());
    dot_set_prefetch_level(PrefetchLevel::PREFETCH_L2);
    const DotKernels* k2 = dot_kernels_for(GetParam().c_str());
    ASSERT_TRUE(k1 && k2);
    EXPECT_STREQ(k1->name, k2->name);
    if (GetParam() == "scalar") {
        EXPECT_EQ(k1, k2) << "the portable table prefetches nothing";
    } else {
        EXPECT_NE(k1, k2) << "each SIMD level has a table per prefetch level";
    }
    for (const DotCase& c : kCases) {
        for (int64_t n : {(int64_t)96, (int64_t)4096, (int64_t)11008}) {
            const std::vector<float> l1 = prefetching_results(k1, c.type, n);
            const std::vector<float> l2 = prefetching_results(k2, c.type, n);
            ASSERT_EQ(l1.size(), l2.size());
            EXPECT_EQ(std::memcmp(l1.data(), l2.data(), l1.size() * sizeof(float)), 0)
                << GetParam() << " " << dtype_name(c.type) << " n=" << n;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Levels, KernelsDotPrefetch,
                         ::testing::Values(std::string("scalar"), std::string("avx2"), std::string("avx512"),
                                           std::string("avx512vnni")),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST(KernelsDotApi, PrefetchLevelFollowsTheVendorAndCanBeSet) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    const PrefetchLevel expected =
        __builtin_cpu_is("amd") ? PrefetchLevel::PREFETCH_L2 : PrefetchLevel::PREFETCH_L1;
#else
    const PrefetchLevel expected = PrefetchLevel::PREFETCH_L1;
#endif
    EXPECT_EQ(dot_prefetch_level_for_this_cpu(), expected);
    const char* env = std::getenv("EMBER_PREFETCH");
    if (env == nullptr) {
        EXPECT_EQ(dot_prefetch_level(), expected) << "the start-up level is the CPU's default";
    }
    const PrefetchLevel saved = dot_prefetch_level();
    const std::string best = dot_simd_level();
    dot_set_prefetch_level(PrefetchLevel::PREFETCH_L1);
    EXPECT_EQ(dot_prefetch_level(), PrefetchLevel::PREFETCH_L1);
    EXPECT_STREQ(dot_prefetch_level_name(), "L1");
    EXPECT_EQ(dot_kernels(), dot_kernels_for(best.c_str())) << "the dispatch follows the level";
    dot_set_prefetch_level(PrefetchLevel::PREFETCH_L2);
    EXPECT_EQ(dot_prefetch_level(), PrefetchLevel::PREFETCH_L2);
    EXPECT_STREQ(dot_prefetch_level_name(), "L2");
    EXPECT_EQ(dot_kernels(), dot_kernels_for(best.c_str()));
    EXPECT_EQ(dot_simd_level(), best);
    dot_force_simd_level("scalar");  // a forced SIMD level keeps its choice across prefetch levels
    dot_set_prefetch_level(PrefetchLevel::PREFETCH_L1);
    EXPECT_STREQ(dot_simd_level(), "scalar");
    dot_force_simd_level(nullptr);
    EXPECT_EQ(dot_simd_level(), best);
    dot_set_prefetch_level(saved);
}

TEST(KernelsDotApi, VecTypesAndPrepare) {
    EXPECT_EQ(dot_vec_type(DType::DTYPE_F16), DType::DTYPE_F32);
    EXPECT_EQ(dot_vec_type(DType::DTYPE_BF16), DType::DTYPE_F32);
    EXPECT_EQ(dot_vec_type(DType::DTYPE_F32), DType::DTYPE_F32);
    EXPECT_EQ(dot_vec_type(DType::DTYPE_Q4_0), DType::DTYPE_Q8_0);
    EXPECT_EQ(dot_vec_type(DType::DTYPE_Q8_0), DType::DTYPE_Q8_0);
    EXPECT_EQ(dot_vec_bytes(DType::DTYPE_Q4_0, 4096), 128u * 34u);
    EXPECT_EQ(dot_vec_bytes(DType::DTYPE_F16, 100), 400u);
    EXPECT_THROW(dot_vec_type((DType)3), std::invalid_argument);

    const auto x = randn(4096, 5);
    std::vector<block_q8_0> a(128), b(128);
    dot_prepare_vec(DType::DTYPE_Q4_0, x.data(), a.data(), 4096);
    quantize_row(DType::DTYPE_Q8_0, x.data(), b.data(), 4096);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), 128 * sizeof(block_q8_0)), 0);
    std::vector<float> f(4096);
    dot_prepare_vec(DType::DTYPE_F16, x.data(), f.data(), 4096);
    EXPECT_EQ(f, x);

    const std::string level = dot_simd_level();
    EXPECT_TRUE(level == "avx512vnni" || level == "avx512" || level == "avx2" || level == "scalar") << level;
    EXPECT_EQ(dot_kernels_for(level.c_str()), dot_kernels());
    EXPECT_THROW(dot_force_simd_level("sse9"), std::invalid_argument);
    dot_force_simd_level("scalar");
    EXPECT_STREQ(dot_simd_level(), "scalar");
    dot_force_simd_level(nullptr);
    EXPECT_EQ(dot_simd_level(), level);
}

}  // namespace
}  // namespace ember
