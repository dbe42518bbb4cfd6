// FFN activation statistics (engine/ffn-stats.h): hand-checked counts, and measurements on a ReLU copy of the
// real stories260K model, one layer of which is silenced by construction.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "engine/ffn-stats.h"
#include "model-edit.h"

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";
const char* const kText =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she "
    "saw a big, red ball. She ran to it and kicked it as far as she could.";

// Layer 0: 3 tokens over 5 neurons, in one call. Fired (h != 0) per neuron: {2, 0, 1, 3, 0}; a negative h
// (relu(gate) > 0, up < 0) fires too. Layer 1: two calls of one token, all zeros.
ember::FfnStats hand_stats(float threshold = 0.0f) {
    ember::FfnStats s(2, 5, threshold);
    const float l0[15] = {1, 0, 0, 2, 0,  //
                          0, 0, 0, 5, 0,  //
                          3, 0, -1, 1, 0};
    const float zeros[5] = {0, 0, 0, 0, 0};
    s.observe(0, l0, 3, 5);
    s.observe(1, zeros, 1, 5);
    s.observe(1, zeros, 1, 5);
    return s;
}

TEST(FfnStats, HandCheckedCounts) {
    const ember::FfnStats s = hand_stats();
    EXPECT_EQ(s.fired, (std::vector<int64_t>{2, 0, 1, 3, 0, 0, 0, 0, 0, 0}));
    EXPECT_EQ(s.n_tokens, (std::vector<int64_t>{3, 2}));
    const ember::FfnLayerSummary a = ember::ffn_stats_layer(s, 0, 0.2);
    EXPECT_DOUBLE_EQ(a.sparsity, 9.0 / 15.0);  // 6 firings of 15 pairs
    EXPECT_DOUBLE_EQ(a.mean_active, 2.0);
    EXPECT_DOUBLE_EQ(a.hot_share, 3.0 / 6.0);  // hot 20% of 5 = neuron 3 alone, 3 of the 6 firings
    EXPECT_EQ(a.n_dead, 2);
    EXPECT_EQ(a.n_tokens, 3);
    const ember::FfnLayerSummary b = ember::ffn_stats_layer(s, 1, 0.2);
    EXPECT_DOUBLE_EQ(b.sparsity, 1.0);
    EXPECT_DOUBLE_EQ(b.hot_share, 0.0);  // no firings at all
    EXPECT_EQ(b.n_dead, 5);
    const ember::FfnLayerSummary t = ember::ffn_stats_total(s, 0.2);
    EXPECT_DOUBLE_EQ(t.sparsity, 19.0 / 25.0);
    EXPECT_DOUBLE_EQ(t.hot_share, 0.5);
    EXPECT_EQ(t.n_dead, 7);
    // The hottest 40% = 2 neurons (3 + 2 firings); all neurons = every firing.
    EXPECT_DOUBLE_EQ(ember::ffn_stats_layer(s, 0, 0.4).hot_share, 5.0 / 6.0);
    EXPECT_DOUBLE_EQ(ember::ffn_stats_layer(s, 0, 1.0).hot_share, 1.0);
}

TEST(FfnStats, HotSetRoundsUp) {
    ember::FfnStats s(1, 7);
    const float h[7] = {1, 1, 1, 1, 1, 1, 1};
    s.observe(0, h, 1, 7);
    EXPECT_DOUBLE_EQ(ember::ffn_stats_layer(s, 0, 0.2).hot_share, 2.0 / 7.0);  // ceil(1.4) = 2 neurons
}

TEST(FfnStats, ThresholdCountsOnlyLargerMagnitudes) {
    const ember::FfnStats s = hand_stats(1.5f);  // fires: 2, 5, 3 (and not 1, -1, 1)
    EXPECT_EQ(s.fired, (std::vector<int64_t>{1, 0, 0, 2, 0, 0, 0, 0, 0, 0}));
    EXPECT_DOUBLE_EQ(ember::ffn_stats_layer(s, 0).sparsity, 12.0 / 15.0);
}

TEST(FfnStats, RejectsWhatDoesNotFit) {
    ember::FfnStats s(2, 5);
    const float h[6] = {};
    EXPECT_THROW(s.observe(2, h, 1, 5), ember::Error);
    EXPECT_THROW(s.observe(-1, h, 1, 5), ember::Error);
    EXPECT_THROW(s.observe(0, h, 1, 6), ember::Error);
    EXPECT_THROW(ember::ffn_stats_layer(s, 2), ember::Error);
    EXPECT_THROW(ember::ffn_stats_layer(s, 0, 1.5), ember::Error);
    EXPECT_THROW(ember::FfnStats(0, 5), ember::Error);
    EXPECT_THROW(ember::FfnStats(1, 5, -1.0f), ember::Error);
}

struct Models {
    std::string relu_path;
    std::unique_ptr<ember::Model> relu, silu;
    Models() {
        // A ReLU copy of stories260K whose layer 2 gate matrix is all zeros: relu(0) * up = 0 for every neuron.
        auto src = ember::GGUFFile::open(kModel);
        ember_test::ModelEdit e;
        e.set_kv["ember.ffn_activation"] = ember_test::value_string("relu");
        const ember::GGUFTensorInfo* gate = src->find_tensor("blk.2.ffn_gate.weight");
        e.replace["blk.2.ffn_gate.weight"] = {{gate->ne[0], gate->ne[1]}, gate->type};
        relu_path = ember_test::temp_path("ffn-stats-relu.gguf");
        ember_test::write_edited_copy(*src, relu_path, e);
        ember::ModelParams mp;
        mp.path = relu_path;
        relu = ember::Model::load(mp);
        mp.path = kModel;
        silu = ember::Model::load(mp);
    }
    ~Models() { std::remove(relu_path.c_str()); }
};

TEST(FfnMeasure, ReluModelLayerSilencedByConstruction) {
    Models m;
    const std::vector<int32_t> tokens = m.relu->tokenizer().encode(kText, true, false);
    ASSERT_GT(tokens.size(), 30u);
    ember::FfnMeasureParams p;
    p.n_ctx = 8;  // several chunks, the last one short
    p.n_threads = 1;
    const ember::FfnStats s = ember::ffn_stats_measure(*m.relu, tokens, p);
    ASSERT_EQ(s.n_layers, 5);
    ASSERT_EQ(s.n_ff, 172);
    for (int l = 0; l < 5; l++) {
        EXPECT_EQ(s.n_tokens[l], (int64_t)tokens.size()) << "layer " << l;
        const ember::FfnLayerSummary r = ember::ffn_stats_layer(s, l);
        if (l == 2) {
            EXPECT_DOUBLE_EQ(r.sparsity, 1.0);
            EXPECT_EQ(r.n_dead, 172);
            EXPECT_DOUBLE_EQ(r.hot_share, 0.0);
        } else {
            // A SwiGLU model's gates read as ReLU: roughly half the neurons fire.
            EXPECT_GT(r.sparsity, 0.1) << "layer " << l;
            EXPECT_LT(r.sparsity, 0.9) << "layer " << l;
            EXPECT_GT(r.hot_share, 0.2) << "layer " << l;  // the hottest 20% fire at least their share
            EXPECT_LE(r.hot_share, 1.0) << "layer " << l;
        }
    }
    p.max_tokens = 13;
    const ember::FfnStats cut = ember::ffn_stats_measure(*m.relu, tokens, p);
    EXPECT_EQ(cut.n_tokens[4], 13);
}

// One chunk holding the whole text equals counting the observer's zeros directly.
TEST(FfnMeasure, OneChunkMatchesDirectCount) {
    Models m;
    const std::vector<int32_t> tokens = m.relu->tokenizer().encode(kText, true, false);
    ember::FfnMeasureParams p;
    p.n_ctx = (int)tokens.size();
    p.n_threads = 1;
    const ember::FfnStats s = ember::ffn_stats_measure(*m.relu, tokens, p);

    ember::SessionParams sp;
    sp.n_ctx = (int)tokens.size();
    sp.n_batch = sp.n_ctx;
    sp.n_threads = 1;
    ember::Session session(*m.relu, sp);
    std::vector<int64_t> nonzero(5, 0);
    session.set_ffn_observer([&](int layer, const float*, int, const float* h, int n, int n_ff) {
        for (int i = 0; i < n * n_ff; i++) nonzero[layer] += h[i] != 0.0f;
    });
    session.eval(tokens);
    for (int l = 0; l < 5; l++) {
        int64_t fired = 0;
        for (int i = 0; i < 172; i++) fired += s.fired[(size_t)l * 172 + i];
        EXPECT_EQ(fired, nonzero[l]) << "layer " << l;
    }
}

TEST(FfnMeasure, SiluModelHasNoExactZeros) {
    Models m;
    const std::vector<int32_t> tokens = m.silu->tokenizer().encode(kText, true, false);
    ember::FfnMeasureParams p;
    p.n_ctx = 16;
    p.n_threads = 1;
    EXPECT_DOUBLE_EQ(ember::ffn_stats_total(ember::ffn_stats_measure(*m.silu, tokens, p)).sparsity, 0.0);
    p.threshold = 1e9f;  // nothing is that large: nothing fires
    EXPECT_DOUBLE_EQ(ember::ffn_stats_total(ember::ffn_stats_measure(*m.silu, tokens, p)).sparsity, 1.0);
    EXPECT_THROW(ember::ffn_stats_measure(*m.silu, {}, p), ember::Error);
    p.n_ctx = 0;
    EXPECT_THROW(ember::ffn_stats_measure(*m.silu, tokens, p), ember::Error);
}

}  // namespace
