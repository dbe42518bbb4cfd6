// Load-time validation: each kind of bad model file gets one ember::Error naming the file and what was wrong.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/ember.h"
#include "tests/model-edit.h"

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";

// Writes the edited model, loads it, and returns the error message ("" when it loaded).
std::string load_error(const ember_test::ModelEdit& edit, const std::string& name) {
    auto src = ember::GGUFFile::open(kModel);
    const std::string path = ember_test::temp_path(name + ".gguf");
    ember_test::write_edited_copy(*src, path, edit);
    std::string msg;
    try {
        ember::ModelParams mp;
        mp.path = path;
        ember::Model::load(mp);
    } catch (const ember::Error& e) {
        msg = e.what();
    }
    std::remove(path.c_str());
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    return msg;
}

TEST(ModelLoad, ReadsHyperParameters) {
    ember::ModelParams mp;
    mp.path = kModel;
    auto m = ember::Model::load(mp);
    const ember::ModelInfo& i = m->info();
    EXPECT_EQ(i.arch, "llama");
    EXPECT_EQ(i.dim, 64);
    EXPECT_EQ(i.n_layers, 5);
    EXPECT_EQ(i.n_heads, 8);
    EXPECT_EQ(i.n_kv_heads, 4);
    EXPECT_EQ(i.head_dim, 8);
    EXPECT_EQ(i.kv_dim, 32);
    EXPECT_EQ(i.n_ff, 172);
    EXPECT_EQ(i.n_vocab, 512);
    EXPECT_EQ(i.n_rot, 8);
    EXPECT_FLOAT_EQ(i.norm_eps, 1e-5f);
    EXPECT_EQ(i.ffn_act, "silu");
    EXPECT_EQ(i.weight_type, "F32");
    // 5 layers of 4*64*64 - 2*64*32 attention + 3*64*172 FFN weights, output 512*64, one embedding row, F32.
    const uint64_t per_layer = (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 172) * 4;
    EXPECT_EQ(i.weight_bytes_per_token, 5 * per_layer + 512 * 64 * 4 + 64 * 4);
}

TEST(ModelLoad, MissingFileNamesThePath) {
    ember::ModelParams mp;
    mp.path = "/nonexistent/model.gguf";
    try {
        ember::Model::load(mp);
        FAIL() << "loaded a missing file";
    } catch (const ember::Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos) << e.what();
    }
}

TEST(ModelLoad, UnknownArchitecture) {
    ember_test::ModelEdit e;
    e.set_kv["general.architecture"] = ember_test::value_string("gpt-j");
    const std::string msg = load_error(e, "arch");
    EXPECT_NE(msg.find("unknown architecture 'gpt-j'"), std::string::npos) << msg;
}

TEST(ModelLoad, MissingTensor) {
    ember_test::ModelEdit e;
    e.drop_tensors.insert("blk.3.ffn_up.weight");
    const std::string msg = load_error(e, "missing");
    EXPECT_NE(msg.find("missing tensor 'blk.3.ffn_up.weight'"), std::string::npos) << msg;
}

TEST(ModelLoad, WrongShape) {
    ember_test::ModelEdit e;
    e.replace["blk.1.attn_k.weight"] = {{64, 64}, 0};
    const std::string msg = load_error(e, "shape");
    EXPECT_NE(msg.find("'blk.1.attn_k.weight': expected shape {64, 32}, found {64, 64}"), std::string::npos) << msg;
}

TEST(ModelLoad, UnsupportedDtype) {
    ember_test::ModelEdit e;
    e.replace["blk.0.attn_q.weight"] = {{64, 64}, 3};  // Q4_1
    const std::string msg = load_error(e, "dtype");
    EXPECT_NE(msg.find("'blk.0.attn_q.weight'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("Q4_1"), std::string::npos) << msg;
}

TEST(ModelLoad, AbsurdHyperParameter) {
    ember_test::ModelEdit e;
    e.set_kv["llama.block_count"] = ember_test::value_u32(4000000000u);
    const std::string msg = load_error(e, "absurd");
    EXPECT_NE(msg.find("llama.block_count"), std::string::npos) << msg;
    EXPECT_NE(msg.find("4000000000"), std::string::npos) << msg;
}

TEST(ModelLoad, HeadsNotDividingDim) {
    ember_test::ModelEdit e;
    e.set_kv["llama.attention.head_count"] = ember_test::value_u32(7);
    const std::string msg = load_error(e, "heads");
    EXPECT_NE(msg.find("not a multiple of head_count 7"), std::string::npos) << msg;
}

TEST(ModelLoad, MissingHyperParameter) {
    ember_test::ModelEdit e;
    e.drop_kv.insert("llama.feed_forward_length");
    const std::string msg = load_error(e, "nokey");
    EXPECT_NE(msg.find("llama.feed_forward_length"), std::string::npos) << msg;
}

TEST(ModelLoad, UnknownFfnActivation) {
    ember_test::ModelEdit e;
    e.set_kv["ember.ffn_activation"] = ember_test::value_string("gelu");
    const std::string msg = load_error(e, "act");
    EXPECT_NE(msg.find("ember.ffn_activation"), std::string::npos) << msg;
}

TEST(ModelLoad, ContextOverflowAndBadTokenAreErrors) {
    ember::ModelParams mp;
    mp.path = kModel;
    auto m = ember::Model::load(mp);
    ember::SessionParams sp;
    sp.n_ctx = 8;
    sp.n_threads = 1;
    ember::Session s(*m, sp);
    EXPECT_THROW(s.eval(std::vector<int32_t>(9, 1)), ember::Error);
    EXPECT_THROW(s.eval({512}), ember::Error);
    EXPECT_THROW(s.eval({-1}), ember::Error);
    EXPECT_EQ(s.n_past(), 0);
    s.eval(std::vector<int32_t>(8, 1));
    EXPECT_THROW(s.eval({1}), ember::Error);
    s.truncate(4);
    EXPECT_EQ(s.n_past(), 4);
    s.eval({1});
    EXPECT_EQ(s.n_past(), 5);
}

// A prompt split over several batches gives the same last-token logits as one batch (only the last batch computes
// logits), and all_logits gathers every batch's rows in order.
TEST(ModelLoad, BatchedEvalMatchesOneBatch) {
    ember::ModelParams mp;
    mp.path = kModel;
    auto m = ember::Model::load(mp);
    std::vector<int32_t> tokens;
    for (int i = 0; i < 20; i++) tokens.push_back(1 + (i * 37) % 500);
    ember::SessionParams one, split;
    one.n_ctx = split.n_ctx = 32;
    one.n_threads = split.n_threads = 2;
    split.n_batch = 8;
    ember::Session a(*m, one), b(*m, split), c(*m, split);
    a.eval(tokens, true);
    b.eval(tokens);
    c.eval(tokens, true);
    EXPECT_EQ(b.n_past(), 20);
    for (int v = 0; v < 512; v++) EXPECT_NEAR(b.logits()[v], a.logits(19)[v], 1e-4);
    for (int i : {0, 7, 8, 15, 16, 19})
        for (int v = 0; v < 512; v++) ASSERT_NEAR(c.logits(i)[v], a.logits(i)[v], 1e-4) << "token " << i;
}

// ReGLU models (ember.ffn_activation = relu) run the ReLU-gated FFN: the logits differ from SwiGLU's.
TEST(ModelLoad, ReluKeySelectsReglu) {
    auto src = ember::GGUFFile::open(kModel);
    ember_test::ModelEdit e;
    e.set_kv["ember.ffn_activation"] = ember_test::value_string("relu");
    const std::string path = ember_test::temp_path("relu.gguf");
    ember_test::write_edited_copy(*src, path, e);
    ember::ModelParams mp;
    mp.path = path;
    auto relu = ember::Model::load(mp);
    mp.path = kModel;
    auto silu = ember::Model::load(mp);
    EXPECT_EQ(relu->info().ffn_act, "relu");
    ember::SessionParams sp;
    sp.n_threads = 1;
    sp.n_ctx = 16;
    ember::Session a(*relu, sp), b(*silu, sp);
    // The FFN observer sees every layer's hidden activations: exact zeros for ReLU, none for SiLU.
    int calls_a = 0, calls_b = 0;
    size_t zeros_a = 0, zeros_b = 0, total = 0;
    a.set_ffn_observer([&](int layer, const float* x_in, int dim, const float* h, int n_tokens, int n_ff) {
        EXPECT_NE(x_in, nullptr);
        EXPECT_EQ(dim, relu->info().dim);
        EXPECT_EQ(layer, calls_a % 5);
        EXPECT_EQ(n_tokens, 2);
        EXPECT_EQ(n_ff, 172);
        calls_a++;
        for (int i = 0; i < n_tokens * n_ff; i++) zeros_a += h[i] == 0.0f, total++;
    });
    b.set_ffn_observer([&](int, const float*, int, const float* h, int n_tokens, int n_ff) {
        calls_b++;
        for (int i = 0; i < n_tokens * n_ff; i++) zeros_b += h[i] == 0.0f;
    });
    a.eval({1, 400});
    b.eval({1, 400});
    EXPECT_EQ(calls_a, 5);
    EXPECT_EQ(calls_b, 5);
    EXPECT_GT(zeros_a, total / 5) << "ReLU should silence a good share of neurons";
    EXPECT_EQ(zeros_b, 0u);
    double diff = 0;
    for (int v = 0; v < 512; v++) diff += std::fabs(a.logits()[v] - b.logits()[v]);
    EXPECT_GT(diff, 1e-2);
    std::remove(path.c_str());
}

}  // namespace
