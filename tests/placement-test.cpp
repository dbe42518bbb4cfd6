// Placement planner (engine/placement.h): budgets on a 7B-like model, the modes, the hybrid greedy against an
// exhaustive search on a tiny model, hand-computed accounting, placement files and their errors, planning speed.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/placement.h"

using namespace ember;
using nlohmann::json;

namespace {

constexpr uint64_t kGiB = 1ull << 30;

// Power-law firing frequencies: the neuron of rank r (0 = hottest) fires with min(1, c * (r + 1)^-0.5), ranks
// scattered over the indices by a seeded shuffle so that the hot set is not simply the first neurons.
std::vector<float> power_law(int n_ff, double c, uint64_t seed) {
    std::vector<int> rank(n_ff);
    for (int i = 0; i < n_ff; i++) rank[i] = i;
    std::mt19937_64 rng(seed);
    for (int i = n_ff - 1; i > 0; i--) std::swap(rank[i], rank[rng() % (uint64_t)(i + 1)]);
    std::vector<float> f(n_ff);
    for (int i = 0; i < n_ff; i++) f[i] = (float)std::min(1.0, c / std::sqrt((double)rank[i] + 1.0));
    return f;
}

// A llama-2-7B-like model in F16 with a 2048-token F32 KV cache and rank-1024 F16 predictors: 32 layers of 4096
// x 11008; mean firing frequency about 0.15.
PlacementModel model_7b(bool profile = true) {
    PlacementModel m;
    m.model_name = "llama-7b-like";
    m.n_layers = 32;
    m.n_ff = 11008;
    m.dim = 4096;
    m.n_vocab = 32000;
    const uint64_t dim = 4096, n_ff = 11008;
    m.attn_bytes = 4 * dim * dim * 2 + dim * 4;
    m.kv_bytes_per_layer = 2 * 2048 * dim * 4;
    m.ffn_norm_bytes = dim * 4;
    m.ffn_dense_bytes = 3 * n_ff * dim * 2;
    m.neuron_bytes = 3 * dim * 2;
    m.gate_row_bytes = dim * 2;
    m.output_bytes = 32000 * dim * 2 + dim * 4;
    m.embd_row_bytes = dim * 2;
    m.gpu_scratch_bytes = 256ull << 20;
    m.has_profile = profile;
    if (profile) {
        m.predictor_bytes = (dim * 1024 + 1024 * n_ff) * 2;
        for (int l = 0; l < m.n_layers; l++) {
            m.freq.push_back(power_law(m.n_ff, 7.0 + (l % 4), 1000 + l));
            m.predicted_share.push_back(0.15f + 0.01f * (float)(l % 3));
        }
    }
    return m;
}

// Three layers of 8 neurons of width 8 with round numbers (1.25 bytes a weight: everything in VRAM runs the FFN
// sparse). Expected bytes per neuron (gate 10, up + down 20):
//   layer 0: f = {1, .5, .25, .25, 0, 0, 0, 0}, mean .25, share .5 -> s = 2, pred = {1, 1, .5, .5, 0...}
//            -> e = {30, 20, 10, 10, 0, 0, 0, 0}, sum 70
//   layer 1: no row, share .25 -> f = pred = .25 -> e = 7.5 each, sum 60
//   layer 2: f = {1, 1, .5, .5, .5, .5, 0, 0}, mean .5, share .25 -> s = .5, pred = f / 2
//            -> e = {25, 25, 12.5, 12.5, 12.5, 12.5, 0, 0}, sum 100
PlacementModel model_tiny(bool profile = true) {
    PlacementModel m;
    m.model_name = "tiny";
    m.n_layers = 3;
    m.n_ff = 8;
    m.dim = 8;
    m.n_vocab = 32;
    m.attn_bytes = 1000;
    m.kv_bytes_per_layer = 200;
    m.ffn_norm_bytes = 10;
    m.ffn_dense_bytes = 240;
    m.neuron_bytes = 30;
    m.gate_row_bytes = 10;
    m.output_bytes = 500;
    m.embd_row_bytes = 20;
    m.gpu_scratch_bytes = 100;
    m.has_profile = profile;
    if (profile) {
        m.predictor_bytes = 50;
        m.freq = {{1, .5f, .25f, .25f, 0, 0, 0, 0}, {}, {1, 1, .5f, .5f, .5f, .5f, 0, 0}};
        m.predicted_share = {.5f, .25f, .25f};
    }
    return m;
}

PlacementRequest request(uint64_t budget, double cpu_bw = 46e9, double gpu_bw = 3e12, int ngl = -1) {
    PlacementRequest r;
    r.vram_budget = budget;
    r.cpu_bandwidth = cpu_bw;
    r.gpu_bandwidth = gpu_bw;
    r.n_gpu_layers = ngl;
    return r;
}

// The tiny model's hand-made placement: layer 0 attention and split FFN (neurons 0, 2, 5, 6 hot), layer 1 all on
// the CPU, layer 2 attention on the CPU and a dense FFN on the GPU, output on the GPU.
Placement tiny_placement() {
    Placement p;
    p.mode = PlacementMode::PLACEMENT_HYBRID;
    p.layers.resize(3);
    p.layers[0].attn_gpu = true;
    p.layers[0].predictor_gpu = true;
    p.layers[0].hot = {0, 2, 5, 6};
    p.layers[2].ffn_gpu_dense = true;
    p.output_gpu = true;
    return p;
}


// The expected bytes per token of each neuron, as placement.h's cost rule says (written out independently here).
std::vector<double> expected_bytes(const PlacementModel& m, int l) {
    std::vector<double> f(m.n_ff, m.predicted_share.empty() ? 1.0 : (double)m.predicted_share[l]);
    if (!m.freq.empty() && !m.freq[l].empty()) f.assign(m.freq[l].begin(), m.freq[l].end());
    double mean = 0;
    for (double x : f) mean += x / m.n_ff;
    const double s = m.has_profile && mean > 0 ? m.predicted_share[l] / mean : 1.0;
    std::vector<double> e(m.n_ff);
    for (int i = 0; i < m.n_ff; i++)
        e[i] = (double)m.gate_row_bytes * std::min(1.0, f[i] * s) + (double)(m.neuron_bytes - m.gate_row_bytes) * f[i];
    return e;
}

// The planner's model of a token's time (docs/architecture.md), written out independently: the serial parts
// (embedding row, attention, predictors, output) at the bandwidth of the side that reads them, plus the slower of the
// FFNs' hot neurons on the GPU and their cold ones on the CPU (layers without a GPU predictor: all cold).
struct FfnSplit {
    double hot = 0, cold = 0;  // expected neuron bytes per token
};
FfnSplit ffn_split(const PlacementModel& m, const Placement& p) {
    FfnSplit s;
    for (int l = 0; l < m.n_layers; l++) {
        const std::vector<double> e = expected_bytes(m, l);
        const LayerPlacement& lp = p.layers[l];
        for (int i = 0; i < m.n_ff; i++) {
            const bool hot = std::binary_search(lp.hot.begin(), lp.hot.end(), i);
            (hot ? s.hot : s.cold) += e[i];
        }
    }
    return s;
}
double modeled_time(const PlacementModel& m, const Placement& p, const PlacementRequest& r) {
    const FfnSplit f = ffn_split(m, p);
    const double serial_cpu = p.cpu_bytes_per_token - f.cold, serial_gpu = p.gpu_bytes_per_token - f.hot;
    return serial_cpu / r.cpu_bandwidth + serial_gpu / r.gpu_bandwidth +
           std::max(f.hot / r.gpu_bandwidth, f.cold / r.cpu_bandwidth);
}
double largest_neuron(const PlacementModel& m) {
    double big = 0;
    for (int l = 0; l < m.n_layers; l++) {
        const std::vector<double> e = expected_bytes(m, l);
        big = std::max(big, *std::max_element(e.begin(), e.end()));
    }
    return big;
}

void expect_same_decisions(const Placement& a, const Placement& b) {
    EXPECT_EQ(a.mode, b.mode);
    EXPECT_EQ(a.output_gpu, b.output_gpu);
    ASSERT_EQ(a.layers.size(), b.layers.size());
    for (size_t l = 0; l < a.layers.size(); l++) {
        EXPECT_EQ(a.layers[l].attn_gpu, b.layers[l].attn_gpu) << "layer " << l;
        EXPECT_EQ(a.layers[l].ffn_gpu_dense, b.layers[l].ffn_gpu_dense) << "layer " << l;
        EXPECT_EQ(a.layers[l].predictor_gpu, b.layers[l].predictor_gpu) << "layer " << l;
        EXPECT_EQ(a.layers[l].hot, b.layers[l].hot) << "layer " << l;
    }
}

void expect_same_accounting(const Placement& a, const Placement& b) {
    EXPECT_EQ(a.vram_weights, b.vram_weights);
    EXPECT_EQ(a.vram_kv, b.vram_kv);
    EXPECT_EQ(a.vram_scratch, b.vram_scratch);
    EXPECT_EQ(a.vram_total, b.vram_total);
    EXPECT_EQ(a.vram_budget, b.vram_budget);
    EXPECT_EQ(a.cpu_bytes_per_token, b.cpu_bytes_per_token);
    EXPECT_EQ(a.gpu_bytes_per_token, b.gpu_bytes_per_token);
    EXPECT_EQ(a.bound_tokens_per_s, b.bound_tokens_per_s);
}

std::string temp_path(const std::string& name) {
    return ::testing::TempDir() + "ember-placement-" + std::to_string(::getpid()) + "-" + name;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

bool exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

// ---- automatic plans on the 7B-like model ----

// The largest saving one step of the greedy can move: an attention block, the output, or a neuron together with its
// layer's predictor.
double largest_step(const PlacementModel& m) {
    double step = std::max((double)m.attn_bytes, (double)m.output_bytes);
    for (int l = 0; l < m.n_layers; l++) {
        const std::vector<double> e = expected_bytes(m, l);
        step = std::max(step, (double)m.predictor_bytes + *std::max_element(e.begin(), e.end()));
    }
    return step;
}

TEST(Placement, AutoStaysWithinBudgetAndBoundGrows) {
    const PlacementModel m = model_7b();
    const double step = largest_neuron(m);
    const double cpu_only = 1.0 / (placement_plan(m, request(0)).cpu_bytes_per_token / 46e9);
    double prev = 0, best_hybrid = 0, gpu_bound = 0;
    int n_hybrid = 0, n_gpu = 0;
    for (uint64_t b = kGiB / 2; b <= 20 * kGiB; b += kGiB / 2) {
        const PlacementRequest r = request(b);
        const Placement p = placement_plan(m, r);
        SCOPED_TRACE("budget " + std::to_string((double)b / kGiB) + " GiB");
        EXPECT_LE(p.vram_total, b);
        EXPECT_EQ(p.vram_total, p.vram_weights + p.vram_kv + p.vram_scratch);
        EXPECT_EQ(p.vram_budget, b);
        EXPECT_EQ(p.vram_scratch, m.gpu_scratch_bytes);
        ASSERT_EQ(p.layers.size(), 32u);
        EXPECT_GT(p.bound_tokens_per_s, cpu_only);
        // The plan's own accounting is what placement_account computes from its decisions.
        Placement q = p;
        q.vram_total = q.vram_weights = 0;
        q.cpu_bytes_per_token = q.bound_tokens_per_s = 0;
        placement_account(m, r, q);
        expect_same_accounting(p, q);
        if (p.mode == PlacementMode::PLACEMENT_GPU) {
            n_gpu++;
            if (gpu_bound == 0) gpu_bound = p.bound_tokens_per_s;
            EXPECT_EQ(p.bound_tokens_per_s, gpu_bound);
            continue;
        }
        ASSERT_EQ(p.mode, PlacementMode::PLACEMENT_HYBRID);
        n_hybrid++;
        const FfnSplit f = ffn_split(m, p);
        EXPECT_LE(f.hot / r.gpu_bandwidth, f.cold / r.cpu_bandwidth * (1 + 1e-12));
        for (const LayerPlacement& lp : p.layers) {
            EXPECT_FALSE(lp.ffn_gpu_dense);
            if (!lp.predictor_gpu) {
                EXPECT_TRUE(lp.hot.empty());
            }
        }
        // Either the budget is used up (not even a neuron with a predictor fits in what is left) or one more neuron
        // would make the GPU's share of the FFNs the slower one.
        const bool full = b - p.vram_total < m.neuron_bytes + m.predictor_bytes + m.ffn_norm_bytes;
        const bool balanced = (f.hot + step) / r.gpu_bandwidth > (f.cold - step) / r.cpu_bandwidth;
        EXPECT_TRUE(full || balanced);
        // More VRAM never makes the modeled token slower (the bytes bound alone may dip as the GPU's serial share
        // grows: it counts attention as if it ran beside the CPU's neurons).
        const double modeled = 1.0 / modeled_time(m, p, r);
        EXPECT_LE(modeled, p.bound_tokens_per_s * (1 + 1e-12));
        EXPECT_GE(modeled, prev * (1 - 1e-12));
        prev = modeled;
        best_hybrid = std::max(best_hybrid, modeled);
    }
    EXPECT_GT(n_hybrid, 20);
    EXPECT_GT(n_gpu, 5);
    // Everything on the GPU, once it fits, is faster than any hybrid plan by the model.
    EXPECT_GT(gpu_bound, best_hybrid);
    std::printf("7B-like F16: CPU only %.2f t/s, best hybrid %.2f t/s (modeled), all on the GPU %.2f t/s\n",
                cpu_only, best_hybrid, gpu_bound);
}

TEST(Placement, EverythingFitsGoesGpu) {
    for (bool profile : {true, false}) {
        const PlacementModel m = model_7b(profile);
        const Placement p = placement_plan(m, request(64 * kGiB));
        SCOPED_TRACE(profile ? "profile" : "no profile");
        EXPECT_EQ(p.mode, PlacementMode::PLACEMENT_GPU);
        EXPECT_TRUE(p.output_gpu);
        uint64_t weights = m.output_bytes;
        for (const LayerPlacement& lp : p.layers) {
            EXPECT_TRUE(lp.attn_gpu);
            EXPECT_EQ(lp.predictor_gpu, profile);
            EXPECT_EQ(lp.ffn_gpu_dense, !profile);
            if (profile) {
                ASSERT_EQ((int)lp.hot.size(), m.n_ff);
                for (int i = 0; i < m.n_ff; i++) ASSERT_EQ(lp.hot[i], i);
                weights += m.attn_bytes + m.predictor_bytes + m.ffn_norm_bytes + m.n_ff * m.neuron_bytes;
            } else {
                EXPECT_TRUE(lp.hot.empty());
                weights += m.attn_bytes + m.ffn_dense_bytes + m.ffn_norm_bytes;
            }
        }
        EXPECT_EQ(p.n_hot_total(), profile ? m.n_layers * m.n_ff : 0);
        EXPECT_EQ(p.vram_weights, weights);
        EXPECT_EQ(p.vram_kv, m.n_layers * m.kv_bytes_per_layer);
        EXPECT_EQ(p.cpu_bytes_per_token, (double)m.embd_row_bytes);
        // The exact need is enough, one byte less is not.
        EXPECT_EQ(placement_plan(m, request(p.vram_total)).mode, PlacementMode::PLACEMENT_GPU);
        EXPECT_NE(placement_plan(m, request(p.vram_total - 1)).mode, PlacementMode::PLACEMENT_GPU);
    }
}

// The 7B-like model's FFN stored at `block_bytes` per 32 weights (18: Q4_0, 34: Q8_0), its predictors Q8_0.
PlacementModel model_7b_quant(uint64_t block_bytes) {
    PlacementModel m = model_7b(true);
    const uint64_t dim = 4096, n_ff = 11008, rank = 1024;
    m.ffn_dense_bytes = 3 * n_ff * dim / 32 * block_bytes;
    m.neuron_bytes = 3 * dim / 32 * block_bytes;
    m.gate_row_bytes = dim / 32 * block_bytes;
    m.predictor_bytes = (dim * rank + rank * n_ff) / 32 * 34;
    return m;
}

// Everything in VRAM with a profile: FFNs of a byte or more a weight (F16 in EverythingFitsGoesGpu, Q8_0 here) run
// sparse, every neuron hot behind its predictor; Q4_0 FFNs run dense, their predictors left out of VRAM, so the
// plan needs the dense bytes only.
TEST(Placement, EverythingFitsRunsQ4FfnDense) {
    for (uint64_t block_bytes : {18u, 34u}) {
        const bool q4 = block_bytes == 18;
        SCOPED_TRACE(q4 ? "Q4_0" : "Q8_0");
        const PlacementModel m = model_7b_quant(block_bytes);
        const Placement p = placement_plan(m, request(64 * kGiB));
        ASSERT_EQ(p.mode, PlacementMode::PLACEMENT_GPU);
        uint64_t weights = m.output_bytes;
        for (const LayerPlacement& lp : p.layers) {
            EXPECT_TRUE(lp.attn_gpu);
            EXPECT_EQ(lp.ffn_gpu_dense, q4);
            EXPECT_EQ(lp.predictor_gpu, !q4);
            EXPECT_EQ((int)lp.hot.size(), q4 ? 0 : m.n_ff);
            weights += m.attn_bytes + m.ffn_norm_bytes +
                       (q4 ? m.ffn_dense_bytes : m.predictor_bytes + (uint64_t)m.n_ff * m.neuron_bytes);
        }
        EXPECT_EQ(p.vram_weights, weights);
        EXPECT_EQ(placement_ffn_sparse(p), !q4);
        EXPECT_EQ(placement_plan(m, request(p.vram_total)).mode, PlacementMode::PLACEMENT_GPU);
        EXPECT_NE(placement_plan(m, request(p.vram_total - 1)).mode, PlacementMode::PLACEMENT_GPU);
    }
}

// Some FFN runs through a predictor on every plan with a profile but one that holds every FFN dense in VRAM.
TEST(Placement, FfnSparseUnlessEveryFfnIsDenseInVram) {
    const PlacementModel m = model_7b(true);
    EXPECT_TRUE(placement_ffn_sparse(placement_plan(m, request(0))));                      // cpu
    EXPECT_TRUE(placement_ffn_sparse(placement_plan(m, request(64 * kGiB))));              // gpu, F16: sparse
    EXPECT_TRUE(placement_ffn_sparse(placement_plan(m, request(6 * kGiB))));               // hybrid
    EXPECT_TRUE(placement_ffn_sparse(placement_plan(m, request(64 * kGiB, 46e9, 3e12, 8))));  // 8 layers offloaded
    EXPECT_FALSE(placement_ffn_sparse(placement_plan(m, request(64 * kGiB, 46e9, 3e12, 40))));  // all, -ngl 40
    EXPECT_FALSE(placement_ffn_sparse(placement_plan(model_7b_quant(18), request(64 * kGiB))));  // gpu, Q4_0
    EXPECT_TRUE(placement_ffn_sparse(Placement{}));                                     // no layers: the CPU's
}

TEST(Placement, BudgetZeroIsCpu) {
    for (bool profile : {true, false}) {
        const Placement p = placement_plan(model_7b(profile), request(0));
        EXPECT_EQ(p.mode, PlacementMode::PLACEMENT_CPU);
        EXPECT_EQ(p.vram_total, 0u);
        EXPECT_EQ(p.vram_scratch, 0u);
        EXPECT_EQ(p.gpu_bytes_per_token, 0.0);
        EXPECT_FALSE(p.output_gpu);
        for (const LayerPlacement& lp : p.layers) EXPECT_FALSE(lp.attn_gpu || lp.ffn_gpu_dense || lp.predictor_gpu);
    }
    // A budget below the scratch holds nothing either.
    EXPECT_EQ(placement_plan(model_7b(), request(100ull << 20)).mode, PlacementMode::PLACEMENT_CPU);
}

TEST(Placement, NoProfileTakesAsManyLayersAsFit) {
    const PlacementModel m = model_7b(false);
    const uint64_t per_layer = m.attn_bytes + m.kv_bytes_per_layer + m.ffn_dense_bytes + m.ffn_norm_bytes;
    int seen_max = 0;
    for (uint64_t b = kGiB / 4; b <= 29 * kGiB / 2; b += kGiB / 4) {
        const PlacementRequest r = request(b);
        const Placement p = placement_plan(m, r);
        SCOPED_TRACE("budget " + std::to_string((double)b / kGiB) + " GiB");
        int n = 0;
        for (int l = 0; l < m.n_layers; l++) {
            const LayerPlacement& lp = p.layers[l];
            EXPECT_EQ(lp.attn_gpu, lp.ffn_gpu_dense);
            EXPECT_FALSE(lp.predictor_gpu);
            if (lp.attn_gpu) {
                n++;
            } else {
                EXPECT_EQ(n, 0) << "a CPU layer after a GPU layer";
            }
        }
        EXPECT_FALSE(p.output_gpu);
        EXPECT_EQ(p.mode, n > 0 ? PlacementMode::PLACEMENT_LAYERS : PlacementMode::PLACEMENT_CPU);
        EXPECT_LE(p.vram_total, b);
        EXPECT_EQ(n, b > m.gpu_scratch_bytes ? (int)std::min<uint64_t>((b - m.gpu_scratch_bytes) / per_layer, 32) : 0);
        // One more layer would not fit.
        if (n < m.n_layers) {
            Placement q = p;
            q.layers[m.n_layers - 1 - n].attn_gpu = true;
            q.layers[m.n_layers - 1 - n].ffn_gpu_dense = true;
            placement_account(m, r, q);
            EXPECT_GT(q.vram_total, b);
        }
        // The GPU reads the dense layers it holds, the CPU the rest.
        EXPECT_DOUBLE_EQ(p.gpu_bytes_per_token, (double)n * (m.attn_bytes + m.ffn_dense_bytes));
        seen_max = std::max(seen_max, n);
    }
    EXPECT_EQ(seen_max, 32);  // 14.5 GiB holds all layers (14.31 GiB with scratch), not the output too
}

TEST(Placement, ExplicitLayerCount) {
    for (bool profile : {true, false}) {
        const PlacementModel m = model_7b(profile);
        SCOPED_TRACE(profile ? "profile" : "no profile");
        const Placement p0 = placement_plan(m, request(kGiB, 46e9, 3e12, 0));
        EXPECT_EQ(p0.mode, PlacementMode::PLACEMENT_CPU);
        EXPECT_EQ(p0.vram_total, 0u);

        const Placement p5 = placement_plan(m, request(kGiB, 46e9, 3e12, 5));
        EXPECT_EQ(p5.mode, PlacementMode::PLACEMENT_LAYERS);
        for (int l = 0; l < 32; l++) {
            EXPECT_EQ(p5.layers[l].attn_gpu, l >= 27) << l;
            EXPECT_EQ(p5.layers[l].ffn_gpu_dense, l >= 27) << l;
            EXPECT_FALSE(p5.layers[l].predictor_gpu);
        }
        EXPECT_FALSE(p5.output_gpu);
        // Not fitted to the budget: reported as it is.
        EXPECT_EQ(p5.vram_weights, 5 * (m.attn_bytes + m.ffn_dense_bytes + m.ffn_norm_bytes));
        EXPECT_GT(p5.vram_total, kGiB);

        const Placement p32 = placement_plan(m, request(kGiB, 46e9, 3e12, 32));
        const Placement p33 = placement_plan(m, request(kGiB, 46e9, 3e12, 33));
        EXPECT_EQ(p33.mode, PlacementMode::PLACEMENT_LAYERS);
        EXPECT_FALSE(p32.output_gpu);
        EXPECT_TRUE(p33.output_gpu);
        for (int l = 0; l < 32; l++) EXPECT_TRUE(p32.layers[l].attn_gpu && p33.layers[l].ffn_gpu_dense);
        EXPECT_EQ(p33.vram_total, p32.vram_total + m.output_bytes);
        EXPECT_EQ(p33.cpu_bytes_per_token, (double)m.embd_row_bytes);
    }
}

TEST(Placement, HotNeuronsAreTheMostFrequent) {
    const PlacementModel m = model_7b();
    int n_split = 0;
    for (uint64_t b : {3 * kGiB, 6 * kGiB, 9 * kGiB, 12 * kGiB}) {
        const Placement p = placement_plan(m, request(b));
        ASSERT_EQ(p.mode, PlacementMode::PLACEMENT_HYBRID);
        for (int l = 0; l < m.n_layers; l++) {
            const LayerPlacement& lp = p.layers[l];
            if (!lp.predictor_gpu) continue;
            for (size_t k = 1; k < lp.hot.size(); k++) ASSERT_LT(lp.hot[k - 1], lp.hot[k]);
            std::vector<bool> is_hot(m.n_ff);
            for (int32_t i : lp.hot) is_hot[i] = true;
            float min_hot = 2, max_cold = -1;
            for (int i = 0; i < m.n_ff; i++) {
                if (is_hot[i])
                    min_hot = std::min(min_hot, m.freq[l][i]);
                else
                    max_cold = std::max(max_cold, m.freq[l][i]);
            }
            EXPECT_GE(min_hot, max_cold) << "budget " << b << " layer " << l;
            n_split += !lp.hot.empty() && (int)lp.hot.size() < m.n_ff;
        }
    }
    EXPECT_GT(n_split, 32);
}

// A GPU not much faster than the CPU: the FFNs split where the hot neurons' GPU time meets the cold ones' CPU time,
// with VRAM to spare; attention goes to the GPU only when the GPU reads faster than the CPU.
TEST(Placement, SlowGpuStopsAtTheBalance) {
    const PlacementModel m = model_7b();
    const double step = largest_neuron(m);
    for (double gpu_bw : {46e9 / 4, 46e9, 2 * 46e9}) {
        const PlacementRequest r = request(12 * kGiB, 46e9, gpu_bw);
        const Placement p = placement_plan(m, r);
        SCOPED_TRACE("gpu bandwidth " + std::to_string(gpu_bw));
        ASSERT_EQ(p.mode, PlacementMode::PLACEMENT_HYBRID);
        // Stopped by the balance, not the budget: VRAM is left for thousands of neurons.
        EXPECT_GT(12 * kGiB - p.vram_total, 1000 * m.neuron_bytes);
        // The hot side is not the slower one, and one more neuron would have made it so.
        const FfnSplit f = ffn_split(m, p);
        EXPECT_GT(f.hot, 0.0);
        EXPECT_LE(f.hot / gpu_bw, f.cold / 46e9 * (1 + 1e-12));
        EXPECT_GT((f.hot + step) / gpu_bw, (f.cold - step) / 46e9);
        for (const LayerPlacement& lp : p.layers) EXPECT_EQ(lp.attn_gpu, gpu_bw > 46e9);
        EXPECT_EQ(p.output_gpu, gpu_bw > 46e9);
    }
    // A GPU so slow that even the first neuron would make it the slower side, and attention slower there: nothing
    // is placed.
    const Placement none = placement_plan(m, request(12 * kGiB, 46e9, 46e9 / 1e6));
    EXPECT_EQ(none.mode, PlacementMode::PLACEMENT_CPU);
    EXPECT_EQ(none.vram_total, 0u);
}

// ---- the greedy against an exhaustive search on a tiny model ----

// The best modeled time (modeled_time above) of any hybrid placement (any output/attention/predictor choice, any
// subset of hot neurons in layers whose predictor is placed) within the budget, or all on the CPU.
double exhaustive_best(const PlacementModel& m, const PlacementRequest& r) {
    std::vector<std::vector<double>> e(m.n_layers);
    double s0 = (double)m.embd_row_bytes + (double)m.output_bytes, c0 = 0;  // serial and neuron bytes, all on the CPU
    for (int l = 0; l < m.n_layers; l++) {
        e[l] = expected_bytes(m, l);
        s0 += (double)(m.attn_bytes + m.predictor_bytes);
        for (double x : e[l]) c0 += x;
    }
    const double cbw = r.cpu_bandwidth, gbw = r.gpu_bandwidth;
    // sg: serial bytes moved to the GPU; hot: neuron bytes moved there.
    const auto cost = [&](double sg, double hot) {
        return (s0 - sg) / cbw + sg / gbw + std::max(hot / gbw, (c0 - hot) / cbw);
    };
    double best = cost(0, 0);  // all on the CPU, no scratch
    if (r.vram_budget < m.gpu_scratch_bytes) return best;
    const uint64_t room = r.vram_budget - m.gpu_scratch_bytes;
    // Each layer's options: attention or not, times predictor off or on with any subset of hot neurons.
    struct Option {
        uint64_t vram;
        double serial, hot;
        bool operator<(const Option& o) const {
            return vram != o.vram ? vram < o.vram : serial != o.serial ? serial < o.serial : hot < o.hot;
        }
        bool operator==(const Option& o) const { return vram == o.vram && serial == o.serial && hot == o.hot; }
    };
    std::vector<std::vector<Option>> opts(m.n_layers);
    for (int l = 0; l < m.n_layers; l++)
        for (int attn = 0; attn < 2; attn++)
            for (int mask = -1; mask < (1 << m.n_ff); mask++) {
                Option o{attn ? m.attn_bytes + m.kv_bytes_per_layer : 0, attn ? (double)m.attn_bytes : 0.0, 0.0};
                if (mask >= 0) {
                    o.vram += m.predictor_bytes + m.ffn_norm_bytes;
                    o.serial += (double)m.predictor_bytes;
                    for (int i = 0; i < m.n_ff; i++)
                        if (mask >> i & 1) o.vram += m.neuron_bytes, o.hot += e[l][i];
                }
                opts[l].push_back(o);
            }
    // Equal options are one option (neurons of equal cost); sorted by VRAM, loops can stop early.
    for (std::vector<Option>& v : opts) {
        std::sort(v.begin(), v.end());
        v.erase(std::unique(v.begin(), v.end()), v.end());
    }
    // The last layer's options grouped by (VRAM, serial bytes), hot bytes sorted: the cost is V-shaped in the hot
    // bytes, so within a group only the values next to the optimum h* matter.
    EXPECT_EQ(m.n_layers, 3);
    std::map<std::pair<uint64_t, double>, std::vector<double>> last;
    for (const Option& o : opts[2]) last[{o.vram, o.serial}].push_back(o.hot);
    const double h_star = c0 * gbw / (cbw + gbw);
    for (int out = 0; out < 2; out++)
        for (const Option& a : opts[0])
            for (const Option& b : opts[1]) {
                const uint64_t v = (out ? m.output_bytes : 0) + a.vram + b.vram;
                if (v > room) break;
                const double sg = (out ? (double)m.output_bytes : 0.0) + a.serial + b.serial, h = a.hot + b.hot;
                for (const auto& g : last) {
                    if (g.first.first > room - v) break;
                    const std::vector<double>& hv = g.second;  // ascending: opts[2] was sorted
                    const auto it = std::lower_bound(hv.begin(), hv.end(), h_star - h);
                    if (it != hv.end()) best = std::min(best, cost(sg + g.first.second, h + *it));
                    if (it != hv.begin()) best = std::min(best, cost(sg + g.first.second, h + *(it - 1)));
                }
            }
    return best;
}

TEST(Placement, GreedyWithinOneStepOfExhaustive) {
    PlacementModel irregular = model_tiny();
    irregular.freq = {{.9f, .1f, .5f, .05f, .3f, .7f, .2f, 0}, {.6f, .6f, .15f, .4f, .8f, .05f, .25f, .1f}, {}};
    irregular.predicted_share = {.4f, .5f, .3f};
    irregular.attn_bytes = 400;
    irregular.kv_bytes_per_layer = 60;
    irregular.output_bytes = 300;
    int n_cases = 0, n_exact = 0;
    for (const PlacementModel& m : {model_tiny(), irregular}) {
        // Everything: 3 layers of attention, KV, predictor, norm and 8 neurons, the output, the scratch.
        const uint64_t all = m.gpu_scratch_bytes + m.output_bytes +
                             3 * (m.attn_bytes + m.kv_bytes_per_layer + m.predictor_bytes + m.ffn_norm_bytes +
                                  8 * m.neuron_bytes);
        const double step = largest_step(m);
        for (double gpu_bw : {1.5, 4.0, 30.0}) {
            for (uint64_t b = 0; b < all; b += 37) {
                const PlacementRequest r = request(b, 1.0, gpu_bw);
                const Placement p = placement_plan(m, r);
                ASSERT_NE(p.mode, PlacementMode::PLACEMENT_GPU);
                const double greedy = modeled_time(m, p, r);
                const double best = exhaustive_best(m, r);
                SCOPED_TRACE("model " + std::to_string(m.attn_bytes) + " budget " + std::to_string(b) + " gpu_bw " +
                             std::to_string(gpu_bw));
                EXPECT_GE(greedy, best - 1e-9);  // the search saw the greedy's own placement
                EXPECT_LE(greedy, best + step / r.cpu_bandwidth + 1e-9);
                n_cases++;
                n_exact += greedy <= best + 1e-9;
            }
        }
    }
    std::printf("greedy equals the exhaustive optimum in %d of %d cases, within one step in all\n", n_exact, n_cases);
    EXPECT_GT(n_exact, 0);
}

TEST(Placement, Deterministic) {
    const PlacementModel m = model_7b();
    for (uint64_t b : {2 * kGiB, 7 * kGiB + 12345}) {
        const Placement a = placement_plan(m, request(b));
        const PlacementModel copy = m;
        const Placement c = placement_plan(copy, request(b));
        expect_same_decisions(a, c);
        expect_same_accounting(a, c);
    }
    // Ties (every neuron of every layer at the same frequency) are broken by layer, then index: the lowest first.
    PlacementModel flat = model_7b();
    for (auto& row : flat.freq) row.assign(flat.n_ff, 0.15f);
    flat.predicted_share.assign(flat.n_layers, 0.15f);
    // 10 GiB: the output, every predictor and attention block (density 1, 0.9995, 0.67), then neurons (0.15)
    // of the first layers, lowest layer and index first.
    const Placement p = placement_plan(flat, request(10 * kGiB));
    int first_partial = -1;
    for (int l = 0; l < flat.n_layers; l++) {
        const std::vector<int32_t>& hot = p.layers[l].hot;
        for (size_t k = 0; k < hot.size(); k++) ASSERT_EQ(hot[k], (int32_t)k);
        if (first_partial < 0 && (int)hot.size() < flat.n_ff) first_partial = l;
        if (first_partial >= 0 && l > first_partial) {
            EXPECT_TRUE(hot.empty()) << l;
        }
    }
    EXPECT_GT(first_partial, 0);
    EXPECT_GT(p.n_hot_total(), 0);
}

// ---- accounting by hand ----

TEST(Placement, AccountMatchesHandNumbers) {
    const PlacementModel m = model_tiny();
    const PlacementRequest r = request(5000, 1000.0, 2000.0);
    Placement p = tiny_placement();
    placement_account(m, r, p);
    // attention 1000 + predictor 50 + norm 10 + 4 neurons x 30 + dense FFN 240 + norm 10 + output 500
    EXPECT_EQ(p.vram_weights, 1930u);
    EXPECT_EQ(p.vram_kv, 200u);
    EXPECT_EQ(p.vram_scratch, 100u);
    EXPECT_EQ(p.vram_total, 2230u);
    EXPECT_EQ(p.vram_budget, 5000u);
    EXPECT_EQ(p.n_hot_total(), 4);
    // CPU: embedding 20 + attention of layers 1, 2 (2000) + layer 0's cold neurons 1, 3, 4, 7 (20 + 10 + 0 + 0)
    //      + layer 1's predictor 50 and neurons 60
    EXPECT_DOUBLE_EQ(p.cpu_bytes_per_token, 2160.0);
    // GPU: attention 1000 + predictor 50 + hot neurons 0, 2, 5, 6 (30 + 10 + 0 + 0) + dense FFN 240 + output 500
    EXPECT_DOUBLE_EQ(p.gpu_bytes_per_token, 1830.0);
    EXPECT_DOUBLE_EQ(p.bound_tokens_per_s, 1000.0 / 2160.0);
    EXPECT_DOUBLE_EQ(p.cpu_bandwidth, 1000.0);  // kept with the plan, for reports of the bound
    EXPECT_DOUBLE_EQ(p.gpu_bandwidth, 2000.0);
    // A slower GPU becomes the bound.
    Placement q = tiny_placement();
    placement_account(m, request(5000, 1000.0, 500.0), q);
    EXPECT_DOUBLE_EQ(q.bound_tokens_per_s, 500.0 / 1830.0);

    // All on the CPU: every layer's attention, predictor and neurons (70 + 60 + 100), the output; no scratch.
    Placement cpu;
    cpu.layers.resize(3);
    placement_account(m, r, cpu);
    EXPECT_EQ(cpu.vram_total, 0u);
    EXPECT_EQ(cpu.vram_scratch, 0u);
    EXPECT_DOUBLE_EQ(cpu.cpu_bytes_per_token, 20.0 + 3000 + 150 + 230 + 500);
    EXPECT_DOUBLE_EQ(cpu.gpu_bytes_per_token, 0.0);
    EXPECT_DOUBLE_EQ(cpu.bound_tokens_per_s, 1000.0 / 3900.0);

    // The output alone still needs the scratch.
    cpu.output_gpu = true;
    placement_account(m, r, cpu);
    EXPECT_EQ(cpu.vram_total, 600u);
    EXPECT_DOUBLE_EQ(cpu.gpu_bytes_per_token, 500.0);

    // Without a profile a CPU FFN reads the whole dense FFN (240), and no predictor.
    const PlacementModel dense = model_tiny(false);
    Placement d;
    d.mode = PlacementMode::PLACEMENT_LAYERS;
    d.layers.resize(3);
    d.layers[2].attn_gpu = d.layers[2].ffn_gpu_dense = true;
    placement_account(dense, r, d);
    EXPECT_EQ(d.vram_weights, 1250u);
    EXPECT_EQ(d.vram_total, 1550u);
    EXPECT_DOUBLE_EQ(d.cpu_bytes_per_token, 20.0 + 2000 + 480 + 500);
    EXPECT_DOUBLE_EQ(d.gpu_bytes_per_token, 1240.0);
}

TEST(Placement, AccountRejectsBadDecisions) {
    const PlacementModel m = model_tiny();
    const PlacementRequest r = request(5000, 1000.0, 2000.0);
    Placement p = tiny_placement();
    p.layers[0].hot = {2, 0};
    EXPECT_THROW(placement_account(m, r, p), Error);
    p.layers[0].hot = {0, 8};
    EXPECT_THROW(placement_account(m, r, p), Error);
    p = tiny_placement();
    p.layers.pop_back();
    EXPECT_THROW(placement_account(m, r, p), Error);
    p = tiny_placement();
    p.layers[1].hot = {1};  // without predictor_gpu
    EXPECT_THROW(placement_account(m, r, p), Error);
}

TEST(Placement, RejectsBadInput) {
    const auto message = [](const PlacementModel& m, const PlacementRequest& r) {
        try {
            placement_plan(m, r);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    const PlacementModel m = model_tiny();
    EXPECT_NE(message(m, request(1000, 0.0, 1.0)).find("cpu_bandwidth"), std::string::npos);
    EXPECT_NE(message(m, request(1000, 1.0, -1.0)).find("gpu_bandwidth"), std::string::npos);
    EXPECT_NE(message(m, request(1000, 1.0, 1.0, -2)).find("n_gpu_layers"), std::string::npos);
    PlacementModel bad = m;
    bad.freq[2].push_back(0.5f);
    EXPECT_NE(message(bad, request(1000, 1, 1)).find("freq[2] has 9 values, expected n_ff 8"), std::string::npos);
    bad = m;
    bad.freq[0][3] = 1.5f;
    EXPECT_NE(message(bad, request(1000, 1, 1)).find("freq[0][3] = 1.5 outside [0, 1]"), std::string::npos);
    bad = m;
    bad.freq[0][3] = std::nanf("");
    EXPECT_NE(message(bad, request(1000, 1, 1)).find("freq[0][3]"), std::string::npos);
    bad = m;
    bad.freq.pop_back();
    EXPECT_NE(message(bad, request(1000, 1, 1)).find("freq has 2 rows"), std::string::npos);
    bad = m;
    bad.predicted_share.push_back(0.1f);
    EXPECT_NE(message(bad, request(1000, 1, 1)).find("predicted_share has 4 values"), std::string::npos);
    bad = m;
    bad.n_ff = 0;
    EXPECT_NE(message(bad, request(1000, 1, 1)).find("n_ff must be > 0"), std::string::npos);
    bad = m;
    bad.n_layers = 0;
    EXPECT_NE(message(bad, request(1000, 1, 1)).find("n_layers must be > 0"), std::string::npos);
    // Rows may be empty (unknown), and so may the whole table.
    PlacementModel ok = m;
    ok.freq.clear();
    EXPECT_EQ(message(ok, request(1000, 1, 1)), "(no error)");
}

// The bound in layer order (engine/decode-bound.h) adds the two sides' times, except a split FFN's halves, which
// overlap: the same as the sides-in-parallel bound with one side, the plain sum with layer offload, in between for
// a hybrid.
TEST(Placement, LayerOrderBoundOverlapsOnlySplitHalves) {
    const PlacementModel m = model_7b();
    const double cbw = 46e9, gbw = 3e12;
    const Placement cpu = placement_plan(m, request(0, cbw, gbw));
    ASSERT_EQ(cpu.mode, PlacementMode::PLACEMENT_CPU);
    EXPECT_DOUBLE_EQ(cpu.layer_order_tokens_per_s, cpu.bound_tokens_per_s);
    const Placement layers = placement_plan(m, request(4 * kGiB, cbw, gbw, 10));
    ASSERT_EQ(layers.mode, PlacementMode::PLACEMENT_LAYERS);
    EXPECT_NEAR(1.0 / layers.layer_order_tokens_per_s,
                layers.cpu_bytes_per_token / cbw + layers.gpu_bytes_per_token / gbw, 1e-12);
    const Placement hybrid = placement_plan(m, request(4 * kGiB, cbw, gbw));
    ASSERT_EQ(hybrid.mode, PlacementMode::PLACEMENT_HYBRID);
    const double sum = hybrid.cpu_bytes_per_token / cbw + hybrid.gpu_bytes_per_token / gbw;
    EXPECT_LT(1.0 / hybrid.layer_order_tokens_per_s, sum);
    EXPECT_LE(hybrid.layer_order_tokens_per_s, hybrid.bound_tokens_per_s);
}

TEST(Placement, DescribeNamesEveryPart) {
    const PlacementModel m = model_tiny();
    Placement p = tiny_placement();
    placement_account(m, request(5000, 1000.0, 2000.0), p);
    const std::string s = placement_describe(m, p);
    std::printf("%s", s.c_str());
    for (const char* part :
         {"placement: hybrid", "VRAM budget      0.00 GiB (5000 bytes)", "VRAM total       0.00 GiB (2230 bytes)",
          "weights        0.00 GiB (1930 bytes)", "KV cache       0.00 GiB (200 bytes)",
          "scratch        0.00 GiB (100 bytes)", "CPU reads 2160 bytes", "GPU reads 1830 bytes",
          // 2.16 s on the CPU, 0.915 s on the GPU; in layer order layer 0's halves overlap: its cold 30 bytes (0.03 s)
          // with its hot 40 (0.02 s), so 3.075 - 0.02 s
          "bound: 0.46 t/s (0.33 t/s in layer order)",
          "output: GPU",
          // hot neurons 0, 2, 5, 6 serve 30 + 10 of the layer's 70 expected bytes
          "layer   0: attention GPU, FFN split: 4 hot of 8 (57.1% of expected active bytes)\n",
          "layer   1: attention CPU, FFN cpu\n", "layer   2: attention CPU, FFN gpu dense\n"})
        EXPECT_NE(s.find(part), std::string::npos) << "missing: " << part;

    const PlacementModel big = model_7b();
    const Placement q = placement_plan(big, request(8 * kGiB));
    const std::string t = placement_describe(big, q);
    int n_layer_lines = 0;
    for (size_t at = t.find("\nlayer "); at != std::string::npos; at = t.find("\nlayer ", at + 1)) n_layer_lines++;
    EXPECT_EQ(n_layer_lines, 32);
    EXPECT_NE(t.find("VRAM budget      8.00 GiB (8589934592 bytes)"), std::string::npos);
    EXPECT_NE(t.find(" hot of 11008 ("), std::string::npos);
}

// ---- placement files ----

TEST(Placement, SaveLoadRoundTrip) {
    const PlacementModel m = model_7b();
    const std::string path = temp_path("round-trip.json");
    for (uint64_t b : {8 * kGiB, 64 * kGiB}) {
        const Placement p = placement_plan(m, request(b));
        placement_save(p, m, path);
        EXPECT_FALSE(exists(path + ".tmp"));
        const Placement q = placement_load(path, m, request(b));
        expect_same_decisions(p, q);
        expect_same_accounting(p, q);
        // Loading under another request recomputes the numbers for it.
        const PlacementRequest slow = request(b, 20e9, 1e12);
        Placement expect = p;
        placement_account(m, slow, expect);
        expect_same_accounting(placement_load(path, m, slow), expect);
        const json j = json::parse(slurp(path));
        EXPECT_EQ(j.at("format"), "ember-placement");
        EXPECT_EQ(j.at("version"), 1);
        EXPECT_EQ(j.at("model").at("name"), "llama-7b-like");
        EXPECT_EQ(j.at("model").at("dim"), 4096);
        EXPECT_EQ(j.at("mode"), placement_mode_name(p.mode));
        if (p.mode == PlacementMode::PLACEMENT_GPU) {
            // Every neuron hot: one range per layer.
            for (const json& l : j.at("layers")) EXPECT_EQ(l.at("hot"), json::parse("[[0, 11008]]"));
            EXPECT_LT(slurp(path).size(), 4096u);
        }
    }
    std::remove(path.c_str());

    // The tiny hand placement: ranges [0, 1), [2, 3), [5, 7).
    const PlacementModel t = model_tiny();
    Placement p = tiny_placement();
    placement_account(t, request(5000, 1000.0, 2000.0), p);
    placement_save(p, t, path);
    const json j = json::parse(slurp(path));
    EXPECT_EQ(j.at("layers").at(0).at("hot"), json::parse("[[0, 1], [2, 3], [5, 7]]"));
    EXPECT_EQ(j.at("layers").at(2).at("ffn_gpu_dense"), true);
    const Placement q = placement_load(path, t, request(5000, 1000.0, 2000.0));
    expect_same_decisions(p, q);
    expect_same_accounting(p, q);
    std::remove(path.c_str());
}

// Saves the tiny hand placement, lets `edit` change its JSON, writes it back, and returns the load error.
template <typename Edit>
std::string load_error(Edit edit, bool profile = true) {
    const PlacementModel m = model_tiny(profile);
    const std::string path = temp_path("bad.json");
    Placement p = tiny_placement();
    if (!profile) p.layers[0].predictor_gpu = false, p.layers[0].hot.clear();
    placement_save(p, model_tiny(), path);
    json j = json::parse(slurp(path));
    edit(j);
    std::ofstream(path) << j.dump();
    std::string what = "(no error)";
    try {
        placement_load(path, m, request(5000, 1000.0, 2000.0));
    } catch (const Error& e) {
        what = e.what();
    }
    std::remove(path.c_str());
    if (what != "(no error)") {
        EXPECT_NE(what.find(path), std::string::npos) << what;
    }
    return what;
}

#define EXPECT_HAS(s, part) EXPECT_NE((s).find(part), std::string::npos) << (s)

TEST(Placement, LoadErrorsNameTheField) {
    // Unreadable and malformed files.
    const std::string missing = temp_path("missing.json");
    try {
        placement_load(missing, model_tiny(), request(1, 1, 1));
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_HAS(std::string(e.what()), missing + ": cannot read");
    }
    const std::string broken = temp_path("broken.json");
    std::ofstream(broken) << "{\"format\": \"ember-placement\", \"version\": 1,, }";
    try {
        placement_load(broken, model_tiny(), request(1, 1, 1));
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_HAS(std::string(e.what()), broken + ": JSON syntax error at byte 44");
    }
    std::remove(broken.c_str());

    EXPECT_HAS(load_error([](json& j) { j = json::array(); }), "expected an object");
    EXPECT_HAS(load_error([](json& j) { j["format"] = "other"; }), "format: expected \"ember-placement\"");
    EXPECT_HAS(load_error([](json& j) { j["version"] = 2; }), "version: expected 1, found 2");
    EXPECT_HAS(load_error([](json& j) { j["version"] = "1"; }), "version: expected an integer, found string");
    EXPECT_HAS(load_error([](json& j) { j.erase("model"); }), "model: missing");
    EXPECT_HAS(load_error([](json& j) { j["model"]["name"] = "other"; }), "model.name: planned for \"other\"");
    EXPECT_HAS(load_error([](json& j) { j["model"]["n_layers"] = 4; }), "model.n_layers: planned for 4");
    EXPECT_HAS(load_error([](json& j) { j["model"]["n_ff"] = 9; }), "model.n_ff: planned for 9");
    EXPECT_HAS(load_error([](json& j) { j["model"]["dim"] = 17; }), "model.dim: planned for 17");
    EXPECT_HAS(load_error([](json& j) { j["mode"] = "fast"; }), "mode: expected cpu, gpu, hybrid or layers");
    EXPECT_HAS(load_error([](json& j) { j["mode"] = "cpu"; }), "mode: \"cpu\", but some parts are on the GPU");
    EXPECT_HAS(load_error([](json& j) { j["mode"] = "gpu"; }), "mode: \"gpu\", but not every");
    EXPECT_HAS(load_error([](json& j) { j["output_gpu"] = "yes"; }), "output_gpu: expected true or false");
    EXPECT_HAS(load_error([](json& j) { j["extra"] = 1; }), "extra: unknown field");
    EXPECT_HAS(load_error([](json& j) { j["layers"] = json::object(); }), "layers: expected an array");
    EXPECT_HAS(load_error([](json& j) { j["layers"].erase(1); }), "layers: expected 3 entries, found 2");
    EXPECT_HAS(load_error([](json& j) { j["layers"][1].erase("attn_gpu"); }), "layers[1].attn_gpu: missing");
    EXPECT_HAS(load_error([](json& j) { j["layers"][0]["attn_gpu"] = 1; }),
               "layers[0].attn_gpu: expected true or false");
    EXPECT_HAS(load_error([](json& j) { j["layers"][2]["predictor_gpu"] = true; }),
               "layers[2]: ffn_gpu_dense and predictor_gpu are both true");
    EXPECT_HAS(load_error([](json& j) { j["layers"][1]["hot"] = json::parse("[[0, 1]]"); }),
               "layers[1].hot: hot neurons given but predictor_gpu is false");
    EXPECT_HAS(load_error([](json& j) { j["layers"][0]["hot"] = 3; }), "layers[0].hot: expected an array");
    EXPECT_HAS(load_error([](json& j) { j["layers"][0]["hot"][2] = json::parse("[1, 2]"); }),
               "layers[0].hot[2]: range [1, 2) overlaps or precedes");
    EXPECT_HAS(load_error([](json& j) { j["layers"][0]["hot"][2] = json::parse("[2, 4]"); }),
               "layers[0].hot[2]: range [2, 4) overlaps");
    EXPECT_HAS(load_error([](json& j) { j["layers"][0]["hot"][2] = json::parse("[5, 9]"); }),
               "layers[0].hot[2]: range [5, 9) is empty or outside [0, n_ff = 8)");
    EXPECT_HAS(load_error([](json& j) { j["layers"][0]["hot"][0] = json::parse("[-1, 1]"); }),
               "layers[0].hot[0]: range [-1, 1)");
    EXPECT_HAS(load_error([](json& j) { j["layers"][0]["hot"][1] = json::parse("[3, 3]"); }),
               "layers[0].hot[1]: range [3, 3) is empty");
    EXPECT_HAS(load_error([](json& j) { j["layers"][0]["hot"][1] = json::parse("[2, 3, 4]"); }),
               "layers[0].hot[1]: expected a [begin, end] pair");
    EXPECT_HAS(load_error([](json& j) { j["layers"][0]["hot"][1] = json::parse("[2, 2.5]"); }),
               "layers[0].hot[1][1]: expected an integer, found number");
    EXPECT_HAS(load_error([](json& j) { j["layers"][0]["unknown"] = 1; }), "layers[0].unknown: unknown field");
    // A placement with a predictor for a model without a profile.
    EXPECT_HAS(load_error([](json& j) { j["layers"][0]["predictor_gpu"] = true; }, false),
               "layers[0].predictor_gpu: true, but model 'tiny' has no profile");
    // The unedited file loads (the edits above are what fails).
    EXPECT_EQ(load_error([](json&) {}), "(no error)");
}

TEST(Placement, FailedSaveKeepsTheOldFile) {
    const PlacementModel m = model_tiny();
    const std::string path = temp_path("keep.json");
    Placement a = tiny_placement();
    placement_account(m, request(5000, 1000.0, 2000.0), a);
    placement_save(a, m, path);
    const std::string before = slurp(path);
    ASSERT_FALSE(before.empty());

    // A placement of the wrong shape is refused before anything is written.
    Placement wrong = a;
    wrong.layers.pop_back();
    EXPECT_THROW(placement_save(wrong, m, path), Error);
    Placement unsorted = a;
    unsorted.layers[0].hot = {2, 0};
    EXPECT_THROW(placement_save(unsorted, m, path), Error);
    PlacementModel not_utf8 = m;
    not_utf8.model_name = "tiny\xff";
    EXPECT_THROW(placement_save(a, not_utf8, path), Error);
    EXPECT_EQ(slurp(path), before);
    EXPECT_FALSE(exists(path + ".tmp"));

    // PATH.tmp cannot be created (a directory is in the way): the old file stays, and so does the directory.
    Placement other = a;
    other.layers[1].attn_gpu = true;
    ASSERT_EQ(::mkdir((path + ".tmp").c_str(), 0700), 0);
    try {
        placement_save(other, m, path);
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_HAS(std::string(e.what()), path + ".tmp: cannot create");
    }
    EXPECT_EQ(slurp(path), before);
    EXPECT_TRUE(exists(path + ".tmp"));
    ::rmdir((path + ".tmp").c_str());

    // And a save that works does replace it.
    placement_save(other, m, path);
    EXPECT_NE(slurp(path), before);
    std::remove(path.c_str());
}

// ---- speed ----

TEST(Placement, PlansA70BModelFast) {
    // llama-2-70B-like in F16: 80 layers of 8192 x 28672, grouped-query attention (8 KV heads of 128).
    PlacementModel m;
    m.model_name = "llama-70b-like";
    m.n_layers = 80;
    m.n_ff = 28672;
    m.dim = 8192;
    m.n_vocab = 32000;
    const uint64_t dim = 8192, kv_dim = 1024, n_ff = 28672;
    m.attn_bytes = (2 * dim * dim + 2 * kv_dim * dim) * 2 + dim * 4;
    m.kv_bytes_per_layer = 2 * 4096 * kv_dim * 4;
    m.ffn_norm_bytes = dim * 4;
    m.ffn_dense_bytes = 3 * n_ff * dim * 2;
    m.neuron_bytes = 3 * dim * 2;
    m.gate_row_bytes = dim * 2;
    m.predictor_bytes = (dim * 1024 + 1024 * n_ff) * 2;
    m.output_bytes = 32000 * dim * 2 + dim * 4;
    m.embd_row_bytes = dim * 2;
    m.gpu_scratch_bytes = 1ull << 30;
    m.has_profile = true;
    for (int l = 0; l < m.n_layers; l++) {
        m.freq.push_back(power_law(m.n_ff, 12.0, 7000 + l));
        m.predicted_share.push_back(0.12f);
    }
    const PlacementRequest r = request(24 * kGiB);
    const auto t0 = std::chrono::steady_clock::now();
    const Placement p = placement_plan(m, r);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("80 x 28672 (2.3M neurons), 24 GiB: %.3f s; %d hot neurons, %.2f GiB used, bound %.2f t/s\n", s,
                p.n_hot_total(), (double)p.vram_total / kGiB, p.bound_tokens_per_s);
    EXPECT_EQ(p.mode, PlacementMode::PLACEMENT_HYBRID);
    EXPECT_LE(p.vram_total, r.vram_budget);
    EXPECT_GT(p.n_hot_total(), 0);
    EXPECT_LT(s, 5.0);
}

}  // namespace
