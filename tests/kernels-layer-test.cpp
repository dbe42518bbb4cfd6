// The per-layer CPU kernels (RMSNorm, RoPE, attention, gated activations) against plain double references
// on seeded random inputs of odd sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

#include "kernels-cpu/activation.h"
#include "kernels-cpu/attention.h"
#include "kernels-cpu/dtype.h"
#include "kernels-cpu/norm.h"
#include "kernels-cpu/quant.h"
#include "kernels-cpu/rope.h"
#include "kernels-cpu/thread-pool.h"

namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

TEST(RmsNorm, MatchesDoubleReference) {
    for (int n : {1, 7, 64, 4099}) {
        const auto x = random_vec(n, 1 + n, 3.0f), w = random_vec(n, 2 + n);
        std::vector<float> out(n);
        ember::rmsnorm(out.data(), x.data(), w.data(), n, 1e-5f);
        double ss = 0;
        for (float v : x) ss += (double)v * v;
        const double scale = 1.0 / std::sqrt(ss / n + 1e-5);
        for (int i = 0; i < n; i++) EXPECT_NEAR(out[i], x[i] * scale * w[i], 1e-5 * (1 + std::fabs(x[i] * scale * w[i])));
    }
}

TEST(RmsNorm, InPlace) {
    auto x = random_vec(33, 5);
    const auto w = random_vec(33, 6);
    std::vector<float> out(33);
    ember::rmsnorm(out.data(), x.data(), w.data(), 33, 1e-6f);
    ember::rmsnorm(x.data(), x.data(), w.data(), 33, 1e-6f);
    EXPECT_EQ(out, x);
}

void rope_reference(std::vector<double>& x, int n_heads, int pos, const ember::RopeParams& p) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < p.n_rot / 2; i++) {
            const double theta = pos * p.freq_scale * std::pow((double)p.freq_base, -2.0 * i / p.n_rot);
            const int i0 = h * p.head_dim + (p.neox ? i : 2 * i);
            const int i1 = h * p.head_dim + (p.neox ? i + p.n_rot / 2 : 2 * i + 1);
            const double a = x[i0], b = x[i1];
            x[i0] = a * std::cos(theta) - b * std::sin(theta);
            x[i1] = a * std::sin(theta) + b * std::cos(theta);
        }
}

TEST(Rope, NormalAndNeoxMatchReference) {
    for (bool neox : {false, true})
        for (int n_rot : {8, 6, 128})
            for (int pos : {0, 1, 17, 1000}) {
                ember::RopeParams p;
                p.head_dim = 128;
                p.n_rot = n_rot;
                p.freq_base = 10000.0f;
                p.freq_scale = 0.5f;
                p.neox = neox;
                const int n_heads = 3;
                auto x = random_vec(n_heads * 128, pos + n_rot);
                std::vector<double> want(x.begin(), x.end());
                rope_reference(want, n_heads, pos, p);
                ember::rope(x.data(), n_heads, pos, p);
                for (size_t i = 0; i < x.size(); i++)
                    ASSERT_NEAR(x[i], want[i], 2e-4 * (1 + std::fabs(want[i])))
                        << "neox=" << neox << " n_rot=" << n_rot << " pos=" << pos << " i=" << i;
            }
}

TEST(Rope, PositionZeroIsIdentityAndTailUntouched) {
    ember::RopeParams p;
    p.head_dim = 16;
    p.n_rot = 8;
    auto x = random_vec(32, 9);
    const auto orig = x;
    ember::rope(x.data(), 2, 0, p);
    EXPECT_EQ(x, orig);
    ember::rope(x.data(), 2, 5, p);
    for (int h = 0; h < 2; h++)
        for (int d = 8; d < 16; d++) EXPECT_EQ(x[h * 16 + d], orig[h * 16 + d]);
}

// Runs attention_heads over caches of k_type / v_type holding k, v (rounded to that type) and checks every head
// against a double reference over the rounded values.
void check_attention(ember::DType k_type, ember::DType v_type) {
    const int n_heads = 6, n_kv_heads = 2, head_dim = 12, n_kv = 37;
    const int kv_stride = n_kv_heads * head_dim;
    const auto q = random_vec(n_heads * head_dim, 11);
    auto k = random_vec(n_kv * kv_stride, 12), v = random_vec(n_kv * kv_stride, 13);
    // The caches in their types, and k, v replaced by what the caches hold.
    std::vector<uint8_t> kc(k.size() * ember::dtype_row_bytes(k_type, 1)), vc(v.size() * ember::dtype_row_bytes(v_type, 1));
    ember::quantize_row(k_type, k.data(), kc.data(), (int64_t)k.size());
    ember::quantize_row(v_type, v.data(), vc.data(), (int64_t)v.size());
    ember::dequantize_row(k_type, kc.data(), k.data(), (int64_t)k.size());
    ember::dequantize_row(v_type, vc.data(), v.data(), (int64_t)v.size());
    std::vector<float> out(n_heads * head_dim), scores(n_kv);
    ember::AttentionArgs a;
    a.q = q.data();
    a.k_cache = kc.data();
    a.v_cache = vc.data();
    a.k_type = k_type;
    a.v_type = v_type;
    a.out = out.data();
    a.scores = scores.data();
    a.n_kv = n_kv;
    a.n_heads = n_heads;
    a.n_kv_heads = n_kv_heads;
    a.head_dim = head_dim;
    a.kv_stride = kv_stride;
    a.scale = 1.0f / std::sqrt((float)head_dim);
    ember::attention_heads(a, 0, 4);
    ember::attention_heads(a, 4, n_heads);
    for (int h = 0; h < n_heads; h++) {
        const int g = h / (n_heads / n_kv_heads);
        std::vector<double> s(n_kv);
        double mx = -1e300, sum = 0;
        for (int t = 0; t < n_kv; t++) {
            double dot = 0;
            for (int d = 0; d < head_dim; d++) dot += (double)q[h * head_dim + d] * k[t * kv_stride + g * head_dim + d];
            s[t] = dot * a.scale;
            mx = std::max(mx, s[t]);
        }
        for (double& x : s) sum += (x = std::exp(x - mx));
        for (int d = 0; d < head_dim; d++) {
            double o = 0;
            for (int t = 0; t < n_kv; t++) o += s[t] / sum * v[t * kv_stride + g * head_dim + d];
            ASSERT_NEAR(out[h * head_dim + d], o, 1e-5)
                << ember::dtype_name(k_type) << "/" << ember::dtype_name(v_type) << " head " << h << " dim " << d;
        }
    }
}

TEST(Attention, GroupedQueryMatchesReference) { check_attention(ember::DType::DTYPE_F32, ember::DType::DTYPE_F32); }

// An F16 KV cache (-ctk/-ctv f16): keys through the F16 dot, values through the F16 axpy, each type on its own.
TEST(Attention, F16CachesMatchReference) {
    check_attention(ember::DType::DTYPE_F16, ember::DType::DTYPE_F16);
    check_attention(ember::DType::DTYPE_F16, ember::DType::DTYPE_F32);
    check_attention(ember::DType::DTYPE_F32, ember::DType::DTYPE_F16);
}

// The engine's grouped attention (attention_tokens) against the per-head reference, for tokens of one to four ranges
// of positions, caches of either type, groups of 1 to 4 heads; and the same bits for any thread count and whether a
// token runs alone or in a batch (its ranges then run as separate work items or on one thread).
struct GroupedCase {
    int n_heads, n_kv_heads, head_dim;
    std::vector<int> n_kv;  // per token
    ember::DType k_type, v_type;
};

std::vector<float> run_grouped(const GroupedCase& c, const std::vector<int>& tokens, int threads,
                               std::vector<float>* want) {
    const int kv_stride = c.n_kv_heads * c.head_dim, q_dim = c.n_heads * c.head_dim;
    int max_kv = 0;
    for (int n : c.n_kv) max_kv = std::max(max_kv, n);
    const auto q = random_vec((size_t)q_dim * c.n_kv.size(), 21);
    const auto k = random_vec((size_t)max_kv * kv_stride, 22), v = random_vec((size_t)max_kv * kv_stride, 23);
    std::vector<uint8_t> kc(k.size() * ember::dtype_row_bytes(c.k_type, 1)), vc(v.size() * ember::dtype_row_bytes(c.v_type, 1));
    ember::quantize_row(c.k_type, k.data(), kc.data(), (int64_t)k.size());
    ember::quantize_row(c.v_type, v.data(), vc.data(), (int64_t)v.size());
    std::vector<float> out((size_t)q_dim * c.n_kv.size(), 777.0f), scores(max_kv);
    std::vector<ember::AttentionArgs> args;
    for (int i : tokens) {
        ember::AttentionArgs a;
        a.q = q.data() + (size_t)i * q_dim;
        a.k_cache = kc.data();
        a.v_cache = vc.data();
        a.k_type = c.k_type;
        a.v_type = c.v_type;
        a.out = out.data() + (size_t)i * q_dim;
        a.scores = scores.data();
        a.n_kv = c.n_kv[i];
        a.n_heads = c.n_heads;
        a.n_kv_heads = c.n_kv_heads;
        a.head_dim = c.head_dim;
        a.kv_stride = kv_stride;
        a.scale = 1.0f / std::sqrt((float)c.head_dim);
        args.push_back(a);
    }
    if (want != nullptr) {  // the reference, head by head
        want->assign(out.size(), 777.0f);
        for (ember::AttentionArgs a : args) {
            a.out = want->data() + (a.q - q.data());
            ember::attention_heads(a, 0, c.n_heads);
        }
    }
    ember::ThreadPool pool(threads);
    std::vector<float> partials;
    ember::attention_tokens(args.data(), (int)args.size(), partials, pool);
    return out;
}

TEST(Attention, GroupedMatchesPerHeadReferenceWithSameBitsEverywhere) {
    using ember::DType;
    const std::vector<GroupedCase> cases = {
        {6, 2, 12, {37}, DType::DTYPE_F32, DType::DTYPE_F32},
        {8, 2, 64, {1300, 5, 512, 513}, DType::DTYPE_F32, DType::DTYPE_F32},
        {4, 4, 32, {1100, 600}, DType::DTYPE_F16, DType::DTYPE_F16},
        {8, 2, 128, {2000}, DType::DTYPE_F16, DType::DTYPE_F32},
        {8, 2, 128, {1025, 7}, DType::DTYPE_F32, DType::DTYPE_F16},
    };
    for (const GroupedCase& c : cases) {
        SCOPED_TRACE("heads " + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) + " head_dim " +
                     std::to_string(c.head_dim) + " " + ember::dtype_name(c.k_type) + "/" +
                     ember::dtype_name(c.v_type));
        std::vector<int> all(c.n_kv.size());
        for (size_t i = 0; i < all.size(); i++) all[i] = (int)i;
        std::vector<float> want;
        const std::vector<float> one = run_grouped(c, all, 1, &want);
        for (size_t e = 0; e < want.size(); e++)
            ASSERT_NEAR(one[e], want[e], 1e-5 * (1 + std::fabs(want[e]))) << "element " << e;
        // 1 thread runs each (token, KV head) on one thread; 5 threads split a lone long token into ranges.
        EXPECT_EQ(run_grouped(c, all, 5, nullptr), one);
        for (int i : all) {
            const std::vector<float> alone = run_grouped(c, {i}, 5, nullptr);
            const size_t q_dim = (size_t)c.n_heads * c.head_dim;
            EXPECT_TRUE(std::equal(alone.begin() + i * q_dim, alone.begin() + (i + 1) * q_dim, one.begin() + i * q_dim))
                << "token " << i << " alone";
        }
    }
}

TEST(Attention, OtherCacheTypesAreRefused) {
    const float x[4] = {0, 0, 0, 0};
    float out[2], scores[1];
    ember::AttentionArgs a;
    a.q = x;
    a.k_cache = x;
    a.v_cache = x;
    a.out = out;
    a.scores = scores;
    a.n_kv = 1;
    a.n_heads = a.n_kv_heads = 1;
    a.head_dim = a.kv_stride = 2;
    a.k_type = ember::DType::DTYPE_Q8_0;
    try {
        ember::attention_heads(a, 0, 1);
        FAIL() << "a Q8_0 cache was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("q8_0"), std::string::npos) << e.what();
    }
}

TEST(Activation, SwigluAndRegluMatchReference) {
    const int n = 1001;
    const auto g = random_vec(n, 21, 4.0f), u = random_vec(n, 22);
    std::vector<float> s(n), r(n);
    ember::swiglu(s.data(), g.data(), u.data(), n);
    ember::reglu(r.data(), g.data(), u.data(), n);
    for (int i = 0; i < n; i++) {
        const double silu = g[i] / (1.0 + std::exp(-(double)g[i]));
        EXPECT_NEAR(s[i], silu * u[i], 1e-5 * (1 + std::fabs(silu * u[i])));
        if (g[i] <= 0)
            EXPECT_EQ(r[i], 0.0f);  // exact zeros: the sparse FFN skips these neurons
        else
            EXPECT_FLOAT_EQ(r[i], g[i] * u[i]);
    }
}

}  // namespace
