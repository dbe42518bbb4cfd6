// The server's generation engine on the real stories260K model: Generator's step API against generate(), slots
// decoded together giving each request the text it gets alone, the bounded queue, cancellation freeing a slot at
// once, prompt-cache reuse across requests, refused requests and shutdown.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/server-slots.h"

using namespace ember;

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";

// Prompts written for this test, in the style of the model's training stories.
const std::vector<std::string> kPrompts = {
    "Once upon a time",
    "Tom had a red ball",
    "The little cat was sad because",
    "One day, Lily went to the park",
    "There was a big tree in the garden",
    "Ben and Mia liked to play",
};

class SlotsTest : public testing::Test {
protected:
    static void SetUpTestSuite() {
        ModelParams mp;
        mp.path = kModel;
        model_ = Model::load(mp).release();
    }
    static void TearDownTestSuite() { delete model_; }

    static SamplerParams greedy() {
        SamplerParams p;
        p.temp = 0;
        return p;
    }
    static SlotServerParams slot_params(int n_slots, int n_queue, int n_ctx = 512) {
        SlotServerParams p;
        p.n_slots = n_slots;
        p.n_queue = n_queue;
        p.session.n_ctx = n_ctx;
        p.session.n_threads = 1;
        return p;
    }
    static std::vector<int32_t> encode(const std::string& text) {
        return model_->tokenizer().encode(text, true, true);
    }
    static SlotRequest request(const std::string& prompt, int n_predict, bool ignore_eos = false) {
        SlotRequest r;
        r.prompt = encode(prompt);
        r.generate.n_predict = n_predict;
        r.generate.ignore_eos = ignore_eos;
        r.sampler = greedy();
        return r;
    }
    // The text one fresh session generates for the prompt, alone.
    static GenerateResult solo(const std::string& prompt, int n_predict) {
        SessionParams sp;
        sp.n_ctx = 512;
        sp.n_threads = 1;
        Session session(*model_, sp);
        Sampler sampler(greedy(), model_->info().n_vocab);
        Generator gen(*model_, session, sampler);
        GenerateParams gp;
        gp.n_predict = n_predict;
        return gen.generate(encode(prompt), gp, nullptr);
    }
    // Waits for the task to end; returns everything it streamed.
    static std::string drain(SlotTask& task) {
        std::vector<std::string> pieces;
        while (task.wait(&pieces)) {
        }
        std::string text;
        for (const std::string& p : pieces) text += p;
        return text;
    }

    static Model* model_;
};

Model* SlotsTest::model_ = nullptr;

}  // namespace

TEST_F(SlotsTest, StepApiInChunksMatchesGenerate) {
    const GenerateResult ref = solo(kPrompts[3], 40);
    ASSERT_EQ(ref.timings.n_generated, 40);
    SessionParams sp;
    sp.n_ctx = 512;
    sp.n_threads = 1;
    Session session(*model_, sp);
    Sampler sampler(greedy(), model_->info().n_vocab);
    Generator gen(*model_, session, sampler);
    GenerateParams gp;
    gp.n_predict = 40;
    std::string streamed;
    const std::vector<int32_t> prompt = encode(kPrompts[3]);
    ASSERT_GT(prompt.size(), 4u);
    gen.start(prompt, gp, [&](const std::string& piece) {
        streamed += piece;
        return true;
    });
    EXPECT_FALSE(gen.done());
    int steps = 0, prompt_steps = 0;
    while (!gen.done()) {
        const GenerateStep s = gen.next(2);  // the prompt two tokens at a time
        ASSERT_GE(s.n_tokens, 1);
        ASSERT_LE(s.n_tokens, 2);
        if (gen.result().timings.n_generated == 0) prompt_steps++;
        session.eval(std::vector<int32_t>(s.tokens, s.tokens + s.n_tokens));
        gen.advance();
        steps++;
    }
    const GenerateResult& r = gen.result();
    EXPECT_EQ(r.text, ref.text);
    EXPECT_EQ(streamed, ref.text);
    EXPECT_EQ(r.finish, FinishReason::FINISH_LENGTH);
    EXPECT_EQ(r.timings.n_prompt, (int)prompt.size());
    EXPECT_EQ(r.timings.n_prompt_eval, (int)prompt.size());
    EXPECT_EQ(r.timings.n_generated, 40);
    EXPECT_EQ(r.timings.n_eval, 39);
    EXPECT_EQ(prompt_steps, (int)(prompt.size() + 1) / 2);
    EXPECT_EQ(steps, prompt_steps + 39);
    EXPECT_THROW(gen.advance(), Error);  // no step in flight
    EXPECT_THROW(gen.next(1), Error);    // nothing running
}

TEST_F(SlotsTest, CancelBetweenStepsEndsTheGeneration) {
    SessionParams sp;
    sp.n_threads = 1;
    Session session(*model_, sp);
    Sampler sampler(greedy(), model_->info().n_vocab);
    Generator gen(*model_, session, sampler);
    GenerateParams gp;
    gp.n_predict = 50;
    int calls = 0;
    gen.start(encode(kPrompts[0]), gp, [&](const std::string&) { return ++calls > 0; });
    for (int i = 0; i < 4; i++) {
        const GenerateStep s = gen.next(0);
        session.eval(std::vector<int32_t>(s.tokens, s.tokens + s.n_tokens));
        gen.advance();
    }
    gen.cancel();
    EXPECT_TRUE(gen.done());
    const GenerateResult first = gen.result();
    EXPECT_EQ(first.finish, FinishReason::FINISH_CANCELLED);
    EXPECT_EQ(first.timings.n_generated, 4);
    EXPECT_EQ(calls, 4);
    // The generator goes on from its tokens: the two parts give the uninterrupted text.
    GenerateParams more;
    more.n_predict = 46;
    const GenerateResult rest = gen.generate(gen.tokens(), more, nullptr);
    EXPECT_EQ(first.text + rest.text, solo(kPrompts[0], 50).text);
}

TEST_F(SlotsTest, SlotsDecodedTogetherGiveEachRequestItsSoloText) {
    SlotServer server(*model_, slot_params(4, 8));
    std::vector<std::shared_ptr<SlotTask>> tasks;
    for (const std::string& p : kPrompts) {  // 6 requests on 4 slots: two wait, then join as slots free
        tasks.push_back(server.submit(request(p, 32)));
        ASSERT_NE(tasks.back(), nullptr);
    }
    for (size_t i = 0; i < tasks.size(); i++) {
        const std::string streamed = drain(*tasks[i]);
        const GenerateResult r = tasks[i]->result();
        EXPECT_EQ(tasks[i]->error(), "");
        EXPECT_EQ(r.text, solo(kPrompts[i], 32).text) << kPrompts[i];
        EXPECT_EQ(streamed, r.text);
        EXPECT_EQ(r.timings.n_generated, 32);
        EXPECT_GE(tasks[i]->slot(), 0);
        EXPECT_LT(tasks[i]->slot(), 4);
    }
    const SlotMetrics m = server.metrics();
    EXPECT_EQ(m.n_requests, 6u);
    EXPECT_EQ(m.n_generated, 6u * 32u);
    EXPECT_EQ(m.n_busy, 0);
    EXPECT_EQ(m.n_queued, 0);
    // Batching happened: steps carried several slots (6 x 32 tokens took far fewer than 6 x 32 steps).
    EXPECT_GT(m.n_step_slots, m.n_steps * 2);
    EXPECT_LT(m.n_steps, 6u * 32u / 2);
}

TEST_F(SlotsTest, FullQueueRefusesAndCancelFreesTheSlotAtOnce) {
    SlotServer server(*model_, slot_params(1, 1, 4096));
    auto running = server.submit(request(kPrompts[0], 4000, true));
    ASSERT_NE(running, nullptr);
    auto queued = server.submit(request(kPrompts[1], 8));
    ASSERT_NE(queued, nullptr);
    EXPECT_EQ(server.submit(request(kPrompts[2], 8)), nullptr);  // one running, one waiting: full
    EXPECT_EQ(server.metrics().n_rejected, 1u);
    std::vector<std::string> pieces;
    ASSERT_TRUE(running->wait(&pieces));  // it is generating
    EXPECT_EQ(running->slot(), 0);
    EXPECT_EQ(queued->slot(), -1);

    const auto t0 = std::chrono::steady_clock::now();
    running->cancel();
    drain(*running);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const GenerateResult r = running->result();
    EXPECT_EQ(r.finish, FinishReason::FINISH_CANCELLED);
    EXPECT_LT(r.timings.n_generated, 4000);
    EXPECT_LT(ms, 1000.0);  // freed at the next step, not after 4000 tokens
    // The waiting request gets the slot and runs to its end.
    EXPECT_EQ(drain(*queued), solo(kPrompts[1], 8).text);
    EXPECT_EQ(queued->result().finish, FinishReason::FINISH_LENGTH);
    const SlotMetrics m = server.metrics();
    EXPECT_EQ(m.n_cancelled, 1u);
    EXPECT_EQ(m.n_requests, 2u);
    EXPECT_NE(server.submit(request(kPrompts[2], 8)), nullptr);  // room again
}

TEST_F(SlotsTest, CancelledWhileQueuedNeverRuns) {
    SlotServer server(*model_, slot_params(1, 4, 4096));
    auto running = server.submit(request(kPrompts[0], 3000, true));
    auto queued = server.submit(request(kPrompts[1], 8));
    ASSERT_NE(queued, nullptr);
    queued->cancel();
    running->cancel();
    drain(*running);
    drain(*queued);
    EXPECT_EQ(queued->result().finish, FinishReason::FINISH_CANCELLED);
    EXPECT_EQ(queued->result().timings.n_generated, 0);
    EXPECT_EQ(queued->slot(), -1);
    EXPECT_EQ(server.metrics().n_cancelled, 2u);
}

TEST_F(SlotsTest, FollowUpRequestReusesTheSlotsPromptCache) {
    SlotServer server(*model_, slot_params(2, 2));
    auto first = server.submit(request(kPrompts[0], 16));
    const std::string text = drain(*first);
    // The conversation so far plus a new sentence, as a chat client sends it: the cached slot is chosen.
    SlotRequest next = request(kPrompts[0] + text + " Then a dog came.", 16);
    auto second = server.submit(next);
    drain(*second);
    EXPECT_EQ(second->slot(), first->slot());
    EXPECT_GT(second->result().timings.n_cached, 16);
    EXPECT_EQ(second->result().text, solo(kPrompts[0] + text + " Then a dog came.", 16).text);
    EXPECT_GT(server.metrics().n_prompt_cached, 16u);
}

TEST_F(SlotsTest, BadRequestsThrowAndQueueNothing) {
    SlotServer server(*model_, slot_params(1, 0, 64));
    SlotRequest r = request(kPrompts[0], 8);
    r.prompt.clear();
    EXPECT_THROW(server.submit(r), Error);
    r.prompt.assign(65, 1);  // longer than the slot's 64 tokens
    EXPECT_THROW(server.submit(r), Error);
    r = request(kPrompts[0], 8);
    r.prompt.push_back(model_->info().n_vocab);
    EXPECT_THROW(server.submit(r), Error);
    r = request(kPrompts[0], -2);
    EXPECT_THROW(server.submit(r), Error);
    r = request(kPrompts[0], 8);
    r.sampler.repeat_penalty = 0;  // must be > 0
    EXPECT_THROW(server.submit(r), Error);
    r = request(kPrompts[0], 8);
    r.generate.logit_bias = {{-1, 1.0f}};
    EXPECT_THROW(server.submit(r), Error);
    EXPECT_EQ(server.metrics().n_requests, 0u);
    auto ok = server.submit(request(kPrompts[0], 8));
    ASSERT_NE(ok, nullptr);
    EXPECT_EQ(drain(*ok), solo(kPrompts[0], 8).text);
    EXPECT_THROW(SlotServer(*model_, slot_params(0, 1)), Error);
    EXPECT_THROW(SlotServer(*model_, slot_params(1, -1)), Error);
}

TEST_F(SlotsTest, StopEndsRunningAndQueuedRequestsWithAnError) {
    SlotServer server(*model_, slot_params(1, 2, 4096));
    auto running = server.submit(request(kPrompts[0], 4000, true));
    auto queued = server.submit(request(kPrompts[1], 8));
    std::vector<std::string> pieces;
    ASSERT_TRUE(running->wait(&pieces));
    server.stop();
    drain(*running);
    drain(*queued);
    EXPECT_NE(running->error().find("shutting down"), std::string::npos) << running->error();
    EXPECT_NE(queued->error().find("shutting down"), std::string::npos) << queued->error();
    EXPECT_THROW(server.submit(request(kPrompts[2], 8)), Error);
}
