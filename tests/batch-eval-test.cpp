// Several sessions evaluated in one forward pass (engine/batch-eval.h): each session's logits must equal what it
// gets alone, prompts and decode steps mixed, and bad batches must be refused before anything is evaluated.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/batch-eval.h"
#include "engine/ember.h"

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";

std::unique_ptr<ember::Model> load() {
    ember::ModelParams mp;
    mp.path = kModel;
    return ember::Model::load(mp);
}

ember::SessionParams params(int n_batch = 64) {
    ember::SessionParams sp;
    sp.n_ctx = 128;
    sp.n_batch = n_batch;
    sp.n_threads = 2;
    return sp;
}

float max_diff(const float* a, const float* b, int n) {
    float m = 0.0f;
    for (int i = 0; i < n; i++) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

// Three sequences of different lengths: prompts batched together, then decode steps batched together, each
// checked against the same sequence evaluated alone.
TEST(BatchEval, MatchesSessionsEvaluatedAlone) {
    auto model = load();
    const int n_vocab = model->info().n_vocab;
    const std::vector<std::vector<int32_t>> prompts = {{1, 400, 31, 90}, {1, 7}, {1, 211, 46, 300, 12, 88, 129}};
    const std::vector<std::vector<int32_t>> steps = {{5, 9, 17}, {33, 2, 64}, {101, 8, 77}};
    std::vector<std::unique_ptr<ember::Session>> batched, alone;
    for (size_t s = 0; s < prompts.size(); s++) {
        batched.push_back(std::make_unique<ember::Session>(*model, params()));
        alone.push_back(std::make_unique<ember::Session>(*model, params()));
    }
    std::vector<ember::BatchEvalItem> items;
    for (size_t s = 0; s < prompts.size(); s++) items.push_back({batched[s].get(), prompts[s].data(), (int)prompts[s].size()});
    ember::sessions_eval(items);
    for (size_t s = 0; s < prompts.size(); s++) {
        alone[s]->eval(prompts[s]);
        EXPECT_EQ(batched[s]->n_past(), (int)prompts[s].size());
        EXPECT_LT(max_diff(batched[s]->logits(), alone[s]->logits(), n_vocab), 1e-4f) << "prompt of sequence " << s;
    }
    for (size_t k = 0; k < steps[0].size(); k++) {
        items.clear();
        for (size_t s = 0; s < prompts.size(); s++) items.push_back({batched[s].get(), &steps[s][k], 1});
        ember::sessions_eval(items);
        for (size_t s = 0; s < prompts.size(); s++) {
            alone[s]->eval({steps[s][k]});
            EXPECT_LT(max_diff(batched[s]->logits(), alone[s]->logits(), n_vocab), 1e-4f)
                << "step " << k << " of sequence " << s;
        }
    }
}

// More tokens than the first session's batch: the items split into several passes (and one item longer than a
// batch runs alone), with the same results.
TEST(BatchEval, SplitsIntoBatchesThatFit) {
    auto model = load();
    const int n_vocab = model->info().n_vocab;
    std::vector<int32_t> a(6, 0), b(5, 0), c(20, 0);
    for (int i = 0; i < 20; i++) c[i] = 3 + i * 7;
    for (int i = 0; i < 6; i++) a[i] = 10 + i;
    for (int i = 0; i < 5; i++) b[i] = 50 + i;
    ember::Session sa(*model, params(8)), sb(*model, params(8)), sc(*model, params(8));
    ember::sessions_eval({{&sa, a.data(), 6}, {&sb, b.data(), 5}, {&sc, c.data(), 20}});
    for (auto [s, toks] : {std::pair{&sa, &a}, std::pair{&sb, &b}, std::pair{&sc, &c}}) {
        ember::Session ref(*model, params(8));
        ref.eval(*toks);
        EXPECT_EQ(s->n_past(), (int)toks->size());
        EXPECT_LT(max_diff(s->logits(), ref.logits(), n_vocab), 1e-4f);
    }
}

// Refused batches name the item and leave every session as it was.
TEST(BatchEval, BadBatchesEvaluateNothing) {
    auto model = load();
    ember::Session a(*model, params()), b(*model, params());
    const std::vector<int32_t> ok = {1, 2, 3}, bad = {1, 999999};
    std::vector<int32_t> long_prompt(200, 5);
    auto expect_refused = [&](const std::vector<ember::BatchEvalItem>& items, const std::string& part) {
        try {
            ember::sessions_eval(items);
            ADD_FAILURE() << "expected an error containing '" << part << "'";
        } catch (const ember::Error& e) {
            EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
        }
        EXPECT_EQ(a.n_past(), 0);
        EXPECT_EQ(b.n_past(), 0);
    };
    expect_refused({{&a, ok.data(), 3}, {&a, ok.data(), 3}}, "item 1: its session is already in the batch");
    expect_refused({{&a, ok.data(), 3}, {&b, bad.data(), 2}}, "item 1: token 1 has id 999999");
    expect_refused({{&a, ok.data(), 3}, {&b, long_prompt.data(), 200}}, "item 1: context full");
    expect_refused({{&a, ok.data(), 0}}, "item 0: expected at least one token");
    auto other = load();
    ember::Session c(*other, params());
    expect_refused({{&a, ok.data(), 3}, {&c, ok.data(), 3}}, "item 1: its session belongs to another model");
}

}  // namespace

namespace {

// Small batches (under matmul's BLAS threshold) run the same dot products as single tokens: on a Q8_0 model a
// decode step batched over several sessions gives each the very logits it gets alone, so a server's greedy output
// does not depend on how many requests share a step.
TEST(BatchEval, SmallBatchesOfAQuantizedModelEqualSoloBitForBit) {
    ember::ModelParams mp;
    mp.path = std::string(EMBER_SOURCE_DIR) + "/models/tiny-relu-q8_0.gguf";
    auto model = ember::Model::load(mp);
    const int n_vocab = model->info().n_vocab;
    // Eight sequences, as a server with -np 8 decodes them.
    const std::vector<std::vector<int32_t>> prompts = {{1, 450, 2143}, {1, 887, 12}, {1, 306, 4}, {1, 99, 1000},
                                                       {1, 5, 6},      {1, 777, 8},  {1, 64},    {1, 2000, 3, 4}};
    std::vector<std::unique_ptr<ember::Session>> batched, alone;
    for (size_t s = 0; s < prompts.size(); s++) {
        batched.push_back(std::make_unique<ember::Session>(*model, params()));
        alone.push_back(std::make_unique<ember::Session>(*model, params()));
        batched[s]->eval(prompts[s]);
        alone[s]->eval(prompts[s]);
    }
    for (int step = 0; step < 4; step++) {
        std::vector<int32_t> next(prompts.size());
        std::vector<ember::BatchEvalItem> items;
        for (size_t s = 0; s < prompts.size(); s++) {
            next[s] = 100 + 37 * step + 11 * (int32_t)s;
            items.push_back({batched[s].get(), &next[s], 1});
        }
        ember::sessions_eval(items);
        for (size_t s = 0; s < prompts.size(); s++) {
            alone[s]->eval({next[s]});
            EXPECT_EQ(max_diff(batched[s]->logits(), alone[s]->logits(), n_vocab), 0.0f)
                << "step " << step << " of sequence " << s;
        }
    }
}

// An F16 KV cache (SessionParams::cache_type_k/v, -ctk/-ctv f16): a prompt over several batches and greedy decode
// steps follow the F32 cache's logits to F16 rounding, and the greedy tokens agree; batched with an F32 session, each
// keeps its own cache type and its solo results.
TEST(KvCacheF16, FollowsTheF32CacheAloneAndInBatches) {
    auto model = load();
    const int n_vocab = model->info().n_vocab;
    ember::SessionParams p16 = params(16), p32 = params(16);
    p16.cache_type_k = p16.cache_type_v = ember::KvType::KV_TYPE_F16;
    ember::Session s16(*model, p16), s32(*model, p32);
    std::vector<int32_t> prompt = {1};
    for (int i = 1; i < 40; i++) prompt.push_back((int32_t)((i * 37 + 11) % (n_vocab - 3)) + 3);
    s16.eval(prompt);
    s32.eval(prompt);
    auto argmax = [&](const float* l) { return (int32_t)(std::max_element(l, l + n_vocab) - l); };
    float scale = 0.0f, worst = 0.0f;
    int same = 0;
    for (int step = 0; step < 48; step++) {
        for (int i = 0; i < n_vocab; i++) scale = std::max(scale, std::fabs(s32.logits()[i]));
        worst = std::max(worst, max_diff(s16.logits(), s32.logits(), n_vocab));
        const int32_t t32 = argmax(s32.logits()), t16 = argmax(s16.logits());
        same += t16 == t32;
        s16.eval({t32});  // both follow the F32 cache's tokens
        s32.eval({t32});
    }
    std::printf("f16 KV cache: max |logit diff| %.4g (logits up to %.3g), %d of 48 greedy tokens as with f32\n", worst,
                scale, same);
    EXPECT_GT(worst, 0.0f) << "the F16 cache rounds: some logit must differ";
    EXPECT_LT(worst, 5e-3f * scale);
    EXPECT_GE(same, 46) << "greedy tokens of the F16 cache against the F32 cache's, of 48";

    // Batched: an F16 and an F32 session together, each against itself alone.
    ember::Session b16(*model, p16), b32(*model, p32), a16(*model, p16), a32(*model, p32);
    const std::vector<int32_t> q = {1, 400, 31, 90, 7, 211};
    std::vector<ember::BatchEvalItem> items = {{&b16, q.data(), (int)q.size()}, {&b32, q.data(), (int)q.size()}};
    ember::sessions_eval(items);
    a16.eval(q);
    a32.eval(q);
    EXPECT_LT(max_diff(b16.logits(), a16.logits(), n_vocab), 1e-4f);
    EXPECT_LT(max_diff(b32.logits(), a32.logits(), n_vocab), 1e-4f);
    EXPECT_GT(max_diff(b16.logits(), b32.logits(), n_vocab), 0.0f) << "each session its own cache type";
}

TEST(KvCacheF16, CacheTypeNamesParseAndOthersAreRefused) {
    EXPECT_EQ(ember::kv_type_from_name("f16", "-ctk"), ember::KvType::KV_TYPE_F16);
    EXPECT_EQ(ember::kv_type_from_name("F32", "-ctk"), ember::KvType::KV_TYPE_F32);
    EXPECT_STREQ(ember::kv_type_name(ember::KvType::KV_TYPE_F16), "f16");
    try {
        ember::kv_type_from_name("q8_0", "-ctv");
        FAIL() << "q8_0 accepted";
    } catch (const ember::Error& e) {
        EXPECT_NE(std::string(e.what()).find("-ctv: invalid value 'q8_0'"), std::string::npos) << e.what();
    }
}

}  // namespace
