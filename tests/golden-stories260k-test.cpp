// Golden test: ember against llama.cpp (build c392e50, F32 weights and KV cache) on stories260K, position by
// position, and the 64 greedy tokens (../shared/testdata/reference/stories260K.llama-cpp.json).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/ember.h"

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";
const std::string kReference = std::string(EMBER_SHARED_DIR) + "/testdata/reference/stories260K.llama-cpp.json";

nlohmann::json load_reference() {
    std::ifstream in(kReference);
    if (!in) throw std::runtime_error("cannot open " + kReference);
    return nlohmann::json::parse(in);
}

int32_t argmax(const float* x, int n) { return (int32_t)(std::max_element(x, x + n) - x); }

struct ErrorStats {
    double max_abs = 0, sum_abs = 0;
    size_t n = 0;
    void add(double a, double b) {
        const double e = std::fabs(a - b);
        max_abs = std::max(max_abs, e);
        sum_abs += e;
        n++;
    }
};

class GoldenStories260K : public ::testing::TestWithParam<int> {};

// Batched prompt evaluation (the GEMM path) and token-by-token evaluation (the matvec path) must both match.
TEST_P(GoldenStories260K, PromptLogitsAndGreedyTokensMatchLlamaCpp) {
    const nlohmann::json ref = load_reference();
    ember::ModelParams mp;
    mp.path = kModel;
    auto model = ember::Model::load(mp);
    const int n_vocab = model->info().n_vocab;
    ASSERT_EQ(n_vocab, ref["n_vocab"].get<int>());
    for (const auto& c : ref["cases"]) {
        const std::string prompt = c["prompt"];
        SCOPED_TRACE("prompt: " + prompt);
        const std::vector<int32_t> want_tokens = c["tokens"].get<std::vector<int32_t>>();
        const std::vector<int32_t> tokens = model->tokenizer().encode(prompt, c["add_bos"].get<bool>(), true);
        ASSERT_EQ(tokens, want_tokens);

        ember::SessionParams sp;
        sp.n_ctx = 128;
        sp.n_threads = GetParam();
        ember::Session session(*model, sp);
        ErrorStats batched, single;
        session.eval(tokens, /*all_logits=*/true);
        for (size_t i = 0; i < tokens.size(); i++) {
            const std::vector<float> want = c["logits"][i].get<std::vector<float>>();
            ASSERT_EQ((int)want.size(), n_vocab);
            const float* got = session.logits((int)i);
            for (int v = 0; v < n_vocab; v++) batched.add(got[v], want[v]);
        }
        ember::Session stepwise(*model, sp);
        for (size_t i = 0; i < tokens.size(); i++) {
            stepwise.eval({tokens[i]});
            const std::vector<float> want = c["logits"][i].get<std::vector<float>>();
            for (int v = 0; v < n_vocab; v++) single.add(stepwise.logits()[v], want[v]);
        }
        printf("[golden] '%s' threads=%d batched: max abs err %.3g, mean %.3g; token by token: max %.3g, mean %.3g\n",
               prompt.c_str(), GetParam(), batched.max_abs, batched.sum_abs / batched.n, single.max_abs,
               single.sum_abs / single.n);
        EXPECT_LT(batched.max_abs, 1e-3);
        EXPECT_LT(single.max_abs, 1e-3);

        // 64 greedy tokens continuing the batched session.
        const std::vector<int32_t> want_greedy = c["greedy_tokens"].get<std::vector<int32_t>>();
        std::vector<int32_t> greedy;
        std::string text;
        int32_t next = argmax(session.logits(), n_vocab);
        for (size_t i = 0; i < want_greedy.size(); i++) {
            greedy.push_back(next);
            text += model->tokenizer().token_to_piece(next);
            session.eval({next});
            next = argmax(session.logits(), n_vocab);
        }
        EXPECT_EQ(greedy, want_greedy);
        EXPECT_EQ(text, c["greedy_text"].get<std::string>());
    }
}

INSTANTIATE_TEST_SUITE_P(Threads, GoldenStories260K, ::testing::Values(1, 2, 3));

}  // namespace
