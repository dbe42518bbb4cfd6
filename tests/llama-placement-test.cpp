// What the planner is told about a real model (models/llama-placement.h): the shipped tiny ReLU model with its
// profile, sizes checked against the tensors and the profile, and a plan made from them on this machine (no GPU
// needed: planning is arithmetic).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "engine/ember.h"
#include "engine/placement.h"
#include "models/llama-placement.h"
#include "models/llama-sparse.h"
#include "predictor/profile.h"

namespace {

const std::string kTiny = std::string(EMBER_SOURCE_DIR) + "/models/tiny-relu-q8_0.gguf";
const std::string kTinyProfile = std::string(EMBER_SOURCE_DIR) + "/models/tiny-relu-q8_0.profile.gguf";

std::unique_ptr<ember::Model> load(const std::string& profile) {
    ember::ModelParams mp;
    mp.path = kTiny;
    mp.profile_path = profile;
    mp.n_gpu_layers = 0;
    return ember::Model::load(mp);
}

TEST(LlamaPlacement, SizesMatchTheTensorsAndTheProfile) {
    auto m = load(kTinyProfile);
    const ember::ModelInfo& info = m->info();
    const ember::LlamaModel& lm = m->llama();
    const ember::ModelProfile prof = ember::profile_read(kTinyProfile);
    const int n_ctx = 256, n_seq = 3;
    const uint64_t scratch = 1000;
    const ember::PlacementModel pm = ember::llama_placement_model(info, lm, &prof, n_ctx, n_seq, scratch);
    EXPECT_EQ(pm.n_layers, info.n_layers);
    EXPECT_EQ(pm.n_ff, info.n_ff);
    const ember::LlamaLayer& L = lm.layers[0];
    EXPECT_EQ(pm.attn_bytes, L.wq.bytes() + L.wk.bytes() + L.wv.bytes() + L.wo.bytes() + info.dim * sizeof(float));
    EXPECT_EQ(pm.ffn_dense_bytes, L.w_gate.bytes() + L.w_up.bytes() + L.w_down.bytes());
    // A neuron: its gate row, up row and down column; n_ff of them make the dense FFN.
    EXPECT_EQ(pm.neuron_bytes * info.n_ff, pm.ffn_dense_bytes);
    EXPECT_EQ(pm.gate_row_bytes * info.n_ff, L.w_gate.bytes());
    EXPECT_EQ(pm.kv_bytes_per_layer, 2ull * n_ctx * info.kv_dim * sizeof(float) * n_seq);
    // F16 keys, values or both: 2 bytes an element instead of 4.
    const auto kv_bytes = [&](ember::DType k, ember::DType v) {
        return ember::llama_placement_model(info, lm, &prof, n_ctx, n_seq, scratch, k, v).kv_bytes_per_layer;
    };
    const uint64_t row_elems = (uint64_t)n_ctx * n_seq * info.kv_dim;
    EXPECT_EQ(kv_bytes(ember::DType::DTYPE_F16, ember::DType::DTYPE_F16), 2 * 2 * row_elems);
    EXPECT_EQ(kv_bytes(ember::DType::DTYPE_F16, ember::DType::DTYPE_F32), (2 + 4) * row_elems);
    EXPECT_EQ(kv_bytes(ember::DType::DTYPE_F32, ember::DType::DTYPE_F16), (4 + 2) * row_elems);
    // Each session's two device allocations and the model's one may each round up to a 2 MiB page.
    EXPECT_EQ(pm.gpu_scratch_bytes, (scratch + 2 * (2ull << 20)) * n_seq + (2ull << 20));
    uint64_t largest_predictor = 0;
    for (const ember::LlamaSparseFfn& s : lm.sparse) largest_predictor = std::max<uint64_t>(largest_predictor, s.predictor.bytes());
    EXPECT_EQ(pm.predictor_bytes, largest_predictor);
    EXPECT_GT(pm.predictor_bytes, 0u);
    EXPECT_EQ(pm.output_bytes, lm.output.bytes() + info.dim * sizeof(float));
    ASSERT_TRUE(pm.has_profile);
    ASSERT_EQ((int)pm.freq.size(), info.n_layers);
    for (int l = 0; l < info.n_layers; l++) {
        EXPECT_EQ(pm.freq[l], prof.layers[l].freq) << "layer " << l;
        EXPECT_FLOAT_EQ(pm.predicted_share[l], 1.0f - prof.layers[l].sparsity) << "layer " << l;
    }

    // Without a profile: dense, no frequencies, no predictor.
    auto dense = load("");
    const ember::PlacementModel pd = ember::llama_placement_model(dense->info(), dense->llama(), nullptr, n_ctx, 1, 0);
    EXPECT_FALSE(pd.has_profile);
    EXPECT_TRUE(pd.freq.empty());
    EXPECT_EQ(pd.predictor_bytes, 0u);
}

// A plan from the real sizes: half the model's bytes as budget gives a hybrid split whose hot neurons are each
// layer's most frequently firing ones, within the budget.
TEST(LlamaPlacement, HybridPlanOfTheTinyModel) {
    auto m = load(kTinyProfile);
    const ember::ModelProfile prof = ember::profile_read(kTinyProfile);
    const ember::PlacementModel pm = ember::llama_placement_model(m->info(), m->llama(), &prof, 128, 1, 1 << 20);
    ember::PlacementRequest req;
    req.vram_budget = m->info().weight_bytes / 2 + (7u << 20);
    req.cpu_bandwidth = 50e9;
    req.gpu_bandwidth = 2000e9;
    const ember::Placement p = ember::placement_plan(pm, req);
    ASSERT_EQ(p.mode, ember::PlacementMode::PLACEMENT_HYBRID);
    EXPECT_LE(p.vram_total, req.vram_budget);
    EXPECT_GT(p.n_hot_total(), 0);
    for (int l = 0; l < pm.n_layers; l++) {
        const std::vector<int32_t>& hot = p.layers[l].hot;
        if (hot.empty() || (int)hot.size() == pm.n_ff) continue;
        float coldest_hot = 1, hottest_cold = 0;
        std::vector<bool> is_hot(pm.n_ff, false);
        for (int32_t i : hot) is_hot[i] = true, coldest_hot = std::min(coldest_hot, pm.freq[l][i]);
        for (int i = 0; i < pm.n_ff; i++)
            if (!is_hot[i]) hottest_cold = std::max(hottest_cold, pm.freq[l][i]);
        EXPECT_GE(coldest_hot, hottest_cold) << "layer " << l;
    }
}

}  // namespace
