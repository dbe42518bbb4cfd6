// Generation: TextStream on hand-made piece streams (stop strings across pieces, UTF-8 characters split across
// byte tokens), then Generator and ChatSession on the real stories260K model against llama.cpp's greedy text:
// n_predict, stop strings, cancellation, a full context, and KV-cache prefix reuse giving a fresh session's text.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/chat-session.h"
#include "engine/generator.h"
#include "engine/text-stream.h"

using namespace ember;

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";
const std::string kReference = std::string(EMBER_SHARED_DIR) + "/testdata/reference/stories260K.llama-cpp.json";

// Everything the stream emits for `pieces`, flushed at the end unless a stop string ended it; one entry per push.
std::vector<std::string> stream_all(TextStream& s, const std::vector<std::string>& pieces) {
    std::vector<std::string> out;
    for (const std::string& p : pieces) out.push_back(s.push(p));
    out.push_back(s.flush());
    return out;
}

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& x : v) s += x;
    return s;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

}  // namespace

// ---- TextStream: no model ----

TEST(TextStream, Utf8IncompleteSuffix) {
    EXPECT_EQ(text_stream_utf8_incomplete(""), 0u);
    EXPECT_EQ(text_stream_utf8_incomplete("abc"), 0u);
    EXPECT_EQ(text_stream_utf8_incomplete("a\xC3"), 1u);                  // é = C3 A9, first byte only
    EXPECT_EQ(text_stream_utf8_incomplete("a\xC3\xA9"), 0u);
    EXPECT_EQ(text_stream_utf8_incomplete("\xE2\x82"), 2u);               // € = E2 82 AC
    EXPECT_EQ(text_stream_utf8_incomplete("\xE2\x82\xAC"), 0u);
    EXPECT_EQ(text_stream_utf8_incomplete("x\xF0\x9F\x98"), 3u);          // 😀 = F0 9F 98 80
    EXPECT_EQ(text_stream_utf8_incomplete("x\xF0\x9F\x98\x80"), 0u);
    EXPECT_EQ(text_stream_utf8_incomplete("\x80\x80\x80\x80"), 0u);       // stray continuation bytes: not held
    EXPECT_EQ(text_stream_utf8_incomplete("\xC3\xA9\xA9"), 0u);           // an extra continuation byte: not held
}

TEST(TextStream, HoldsSplitCharactersUntilComplete) {
    TextStream s({});
    EXPECT_EQ(s.push("caf"), "caf");
    EXPECT_EQ(s.push("\xC3"), "");  // é's first byte token
    EXPECT_EQ(s.push("\xA9 "), "\xC3\xA9 ");
    EXPECT_EQ(s.push("\xF0"), "");  // 😀 as four byte tokens
    EXPECT_EQ(s.push("\x9F"), "");
    EXPECT_EQ(s.push("\x98"), "");
    EXPECT_EQ(s.push("\x80!"), "\xF0\x9F\x98\x80!");
    EXPECT_EQ(s.push("ok\xE2\x82"), "ok");  // a piece ending inside €
    EXPECT_EQ(s.push("\xAC"), "\xE2\x82\xAC");
    EXPECT_EQ(s.flush(), "");
    EXPECT_FALSE(s.stopped());
}

TEST(TextStream, FlushGivesAnIncompleteCharacterAsItIs) {
    TextStream s({});
    EXPECT_EQ(s.push("end\xE2\x82"), "end");
    EXPECT_EQ(s.flush(), "\xE2\x82");
}

TEST(TextStream, StopStringAcrossPiecesIsNeverEmitted) {
    TextStream s({"lo w"});
    const std::vector<std::string> out = stream_all(s, {"Hel", "lo wo", "rld"});
    EXPECT_EQ(join(out), "Hel");
    EXPECT_EQ(out[0], "He");  // "l" may start "lo w": held
    EXPECT_TRUE(s.stopped());
    EXPECT_EQ(s.stop_string(), "lo w");
    EXPECT_EQ(s.push("more"), "");  // stopped for good
}

TEST(TextStream, HeldPrefixIsReleasedWhenItDoesNotBecomeAStop) {
    TextStream s({"\nUser:"});
    EXPECT_EQ(s.push("Hi.\n"), "Hi.");
    EXPECT_EQ(s.push("Us"), "");
    EXPECT_EQ(s.push("a"), "\nUsa");  // "\nUsa" cannot become "\nUser:" any more
    EXPECT_EQ(s.push("\nUser"), "");
    EXPECT_EQ(s.flush(), "\nUser");  // generation ended without the stop string: the held text is the reply's end
    EXPECT_FALSE(s.stopped());
}

TEST(TextStream, EarliestStopWinsAndTheRestOfThePieceIsDropped) {
    TextStream s({"world", "lo", ""});  // the empty stop string is ignored
    EXPECT_EQ(s.push("hello world"), "hel");
    EXPECT_EQ(s.stop_string(), "lo");
    EXPECT_EQ(s.flush(), "");
}

TEST(TextStream, StopStringMadeOfSplitUtf8) {
    TextStream s({"\xC3\xA9!"});  // "é!"
    EXPECT_EQ(s.push("caf\xC3"), "caf");
    EXPECT_EQ(s.push("\xA9"), "");  // complete é, but it may start the stop string
    EXPECT_EQ(s.push("!x"), "");
    EXPECT_TRUE(s.stopped());
}

// ---- Generator and ChatSession on stories260K ----

class GeneratorTest : public testing::Test {
protected:
    static void SetUpTestSuite() {
        ModelParams mp;
        mp.path = kModel;
        model_ = Model::load(mp).release();
        std::ifstream in(kReference, std::ios::binary);
        ASSERT_TRUE(in) << kReference;
        std::stringstream ss;
        ss << in.rdbuf();
        const nlohmann::json ref = nlohmann::json::parse(ss.str());
        prompt_text_ = new std::string(ref["cases"][0]["prompt"].get<std::string>());
        greedy_text_ = new std::string(ref["cases"][0]["greedy_text"].get<std::string>());
    }
    static void TearDownTestSuite() {
        delete model_;
        delete prompt_text_;
        delete greedy_text_;
    }

    // A session, greedy sampler and generator; greedy with the repeat penalty off, as the reference was made.
    struct Engine {
        Engine(const Model& m, int n_ctx) : session(m, session_params(n_ctx)), sampler(greedy(), m.info().n_vocab),
                                            gen(m, session, sampler) {}
        static SessionParams session_params(int n_ctx) {
            SessionParams p;
            p.n_ctx = n_ctx;
            p.n_threads = 1;
            return p;
        }
        static SamplerParams greedy() {
            SamplerParams p;
            p.temp = 0;
            p.repeat_penalty = 1.0f;
            return p;
        }
        Session session;
        Sampler sampler;
        Generator gen;
    };

    std::unique_ptr<Engine> engine(int n_ctx = 0) { return std::make_unique<Engine>(*model_, n_ctx); }
    std::vector<int32_t> encode(const std::string& text, bool bos) const {
        return model_->tokenizer().encode(text, bos, true);
    }
    std::vector<int32_t> prompt() const { return encode(*prompt_text_, true); }
    static GenerateParams n_predict(int n) {
        GenerateParams p;
        p.n_predict = n;
        return p;
    }

    static Model* model_;
    static std::string* prompt_text_;
    static std::string* greedy_text_;
};

Model* GeneratorTest::model_ = nullptr;
std::string* GeneratorTest::prompt_text_ = nullptr;
std::string* GeneratorTest::greedy_text_ = nullptr;

TEST_F(GeneratorTest, GreedyMatchesLlamaCppReference) {
    auto e = engine();
    std::string streamed;
    int calls = 0;
    const GenerateResult r = e->gen.generate(prompt(), n_predict(64), [&](const std::string& piece) {
        EXPECT_FALSE(piece.empty());
        streamed += piece;
        calls++;
        return true;
    });
    EXPECT_EQ(r.text, *greedy_text_);
    EXPECT_EQ(streamed, r.text);
    EXPECT_EQ(calls, 64);  // ASCII text and no stop strings: every token's piece goes out at once
    EXPECT_EQ(r.finish, FinishReason::FINISH_LENGTH);
    EXPECT_STREQ(finish_reason_name(r.finish), "length");
    EXPECT_TRUE(r.stop.empty());
    const GenerateTimings& t = r.timings;
    EXPECT_EQ(t.n_prompt, 5);  // BOS + 4, as in the reference's tokens
    EXPECT_EQ(t.n_cached, 0);
    EXPECT_EQ(t.n_prompt_eval, 5);
    EXPECT_EQ(t.n_generated, 64);
    EXPECT_EQ(t.n_sample, 64);
    EXPECT_EQ(t.n_eval, 63);  // the 64th token is not evaluated
    EXPECT_GE(t.prompt_ms, 0.0);
    EXPECT_GT(t.generate_ms(), 0.0);
    EXPECT_EQ(e->gen.tokens().size(), 5u + 64u);
    EXPECT_EQ(e->session.n_past(), 5 + 63);
}

TEST_F(GeneratorTest, NPredictIsHonoured) {
    for (int n : {0, 1, 10}) {
        auto e = engine();
        const GenerateResult r = e->gen.generate(prompt(), n_predict(n), nullptr);
        EXPECT_EQ(r.finish, FinishReason::FINISH_LENGTH) << n;
        EXPECT_EQ(r.timings.n_generated, n);
        EXPECT_EQ(r.timings.n_eval, n > 0 ? n - 1 : 0);
        EXPECT_TRUE(starts_with(*greedy_text_, r.text)) << r.text;
        EXPECT_EQ(r.text.empty(), n == 0);
    }
}

TEST_F(GeneratorTest, StopStringTruncatesRightBeforeIt) {
    // Stops inside one token, across tokens, at a newline, and ending in the 64th (last) token.
    for (const std::string stop : {"play", "Lily. She", "\n", "mom said", "red ball"}) {
        const size_t at = greedy_text_->find(stop);
        ASSERT_NE(at, std::string::npos) << stop;
        auto e = engine();
        GenerateParams p = n_predict(64);
        p.stop = {"never in this story", stop};
        std::string streamed;
        const GenerateResult r = e->gen.generate(prompt(), p, [&](const std::string& piece) {
            streamed += piece;
            return true;
        });
        EXPECT_EQ(r.text, greedy_text_->substr(0, at)) << stop;
        EXPECT_EQ(streamed, r.text);
        EXPECT_EQ(r.finish, FinishReason::FINISH_STOP_STRING) << stop;
        EXPECT_STREQ(finish_reason_name(r.finish), "stop");
        EXPECT_EQ(r.stop, stop);
    }
}

TEST_F(GeneratorTest, HeldStopPrefixIsFlushedWhenGenerationEnds) {
    // The 64 tokens end with "said", which could still become "said no": held, then flushed at n_predict.
    auto e = engine();
    GenerateParams p = n_predict(64);
    p.stop = {"said no"};
    std::string streamed;
    const GenerateResult r = e->gen.generate(prompt(), p, [&](const std::string& piece) {
        streamed += piece;
        return true;
    });
    EXPECT_EQ(r.finish, FinishReason::FINISH_LENGTH);
    EXPECT_EQ(r.text, *greedy_text_);
    EXPECT_EQ(streamed, *greedy_text_);
}

TEST_F(GeneratorTest, CallbackReturningFalseCancels) {
    auto e = engine();
    int calls = 0;
    std::string streamed;
    const GenerateResult r = e->gen.generate(prompt(), n_predict(64), [&](const std::string& piece) {
        streamed += piece;
        return ++calls < 3;
    });
    EXPECT_EQ(r.finish, FinishReason::FINISH_CANCELLED);
    EXPECT_STREQ(finish_reason_name(r.finish), "cancelled");
    EXPECT_EQ(calls, 3);
    EXPECT_EQ(r.text, streamed);  // what the callback saw, the refused piece included
    EXPECT_TRUE(starts_with(*greedy_text_, r.text)) << r.text;
    EXPECT_EQ(r.timings.n_generated, 3);
    // The generator stays usable: continuing from its tokens gives the rest of the greedy text.
    const std::vector<int32_t> ctx = e->gen.tokens();
    EXPECT_EQ(ctx.size(), 5u + 3u);
    const GenerateResult rest = e->gen.generate(ctx, n_predict(61), nullptr);
    EXPECT_EQ(rest.timings.n_cached, 7);  // the prompt and two evaluated tokens; the third was not evaluated
    EXPECT_EQ(r.text + rest.text, *greedy_text_);
}

TEST_F(GeneratorTest, EndOfGenerationTokenStops) {
    // stories260K rarely ends a story by itself: a logit bias makes EOS the greedy choice after 3 tokens.
    auto e = engine();
    const GenerateResult head = e->gen.generate(prompt(), n_predict(3), nullptr);
    GenerateParams p = n_predict(64);
    p.logit_bias = {{model_->tokenizer().eos(), 100.0f}};
    const GenerateResult r = e->gen.generate(e->gen.tokens(), p, nullptr);
    EXPECT_EQ(r.finish, FinishReason::FINISH_EOG);
    EXPECT_STREQ(finish_reason_name(r.finish), "stop");
    EXPECT_TRUE(r.text.empty()) << r.text;  // EOS gives no text
    EXPECT_EQ(r.timings.n_generated, 0);
    EXPECT_EQ(r.timings.n_sample, 1);
    EXPECT_EQ(e->gen.tokens().size(), 5u + 3u);  // EOS is not part of the text
    // ignore_eos wins over the bias: EOS is never sampled.
    p.ignore_eos = true;
    p.n_predict = 61;
    const GenerateResult rest = e->gen.generate(e->gen.tokens(), p, nullptr);
    EXPECT_EQ(rest.finish, FinishReason::FINISH_LENGTH);
    EXPECT_EQ(head.text + rest.text, *greedy_text_);
    p.logit_bias = {{model_->info().n_vocab, 1.0f}};
    EXPECT_THROW(e->gen.generate(e->gen.tokens(), p, nullptr), Error);
}

TEST_F(GeneratorTest, ControlTokenNamedByAStopStringStops) {
    // Chat formats stop at control tokens such as <|im_end|>; stories260K's control token <s> (BOS) stands in,
    // made the greedy choice by a logit bias.
    const Tokenizer& tok = model_->tokenizer();
    ASSERT_EQ(tok.token_to_piece(tok.bos(), false), "");
    const std::string bos_text = tok.token_to_piece(tok.bos(), true);
    ASSERT_FALSE(bos_text.empty());
    auto e = engine();
    GenerateParams p = n_predict(8);
    p.logit_bias = {{tok.bos(), 100.0f}};
    const GenerateResult plain = e->gen.generate(prompt(), p, nullptr);  // not a stop string: an empty piece
    EXPECT_EQ(plain.finish, FinishReason::FINISH_LENGTH);
    EXPECT_EQ(plain.text, "");
    p.stop = {bos_text};
    const GenerateResult r = e->gen.generate(prompt(), p, nullptr);
    EXPECT_EQ(r.finish, FinishReason::FINISH_STOP_STRING);
    EXPECT_EQ(r.stop, bos_text);
    EXPECT_EQ(r.text, "");
    EXPECT_EQ(r.timings.n_generated, 1);
}

TEST_F(GeneratorTest, FullContextStopsWithLengthAndIgnoreEos) {
    auto e = engine(16);
    GenerateParams p;  // n_predict -1: until the context is full
    p.ignore_eos = true;
    const GenerateResult r = e->gen.generate(prompt(), p, nullptr);
    EXPECT_EQ(r.finish, FinishReason::FINISH_CONTEXT_FULL);
    EXPECT_STREQ(finish_reason_name(r.finish), "length");
    EXPECT_EQ(r.timings.n_eval, 16 - 5);
    EXPECT_EQ(r.timings.n_generated, 16 - 5 + 1);  // the last one printed, not evaluated
    EXPECT_EQ(e->session.n_past(), 16);
    EXPECT_TRUE(starts_with(*greedy_text_, r.text)) << r.text;
}

TEST_F(GeneratorTest, PrefixReuseEvaluatesOnlyNewTokensAndMatchesAFreshSession) {
    auto e = engine();
    const GenerateResult first = e->gen.generate(prompt(), n_predict(16), nullptr);
    ASSERT_EQ(first.timings.n_generated, 16);

    // The text so far plus a new sentence: the cache holds the prompt and 15 evaluated tokens.
    std::vector<int32_t> p2 = e->gen.tokens();
    ASSERT_EQ(p2.size(), 5u + 16u);
    const std::vector<int32_t> more = encode(" Then a dog came.", false);
    p2.insert(p2.end(), more.begin(), more.end());
    const GenerateResult second = e->gen.generate(p2, n_predict(24), nullptr);
    EXPECT_EQ(second.timings.n_prompt, (int)p2.size());
    EXPECT_EQ(second.timings.n_cached, 5 + 15);
    EXPECT_EQ(second.timings.n_prompt_eval, 1 + (int)more.size());  // the unevaluated 16th token and the new ones

    auto fresh = engine();
    const GenerateResult ref = fresh->gen.generate(p2, n_predict(24), nullptr);
    EXPECT_EQ(ref.timings.n_cached, 0);
    EXPECT_EQ(ref.timings.n_prompt_eval, (int)p2.size());
    EXPECT_EQ(second.text, ref.text);
    EXPECT_FALSE(ref.text.empty());

    // A prompt that leaves the cache after the original prompt: only the shared part is kept.
    std::vector<int32_t> p3 = prompt();
    const std::vector<int32_t> other = encode(" in a big forest", false);
    p3.insert(p3.end(), other.begin(), other.end());
    const GenerateResult third = e->gen.generate(p3, n_predict(24), nullptr);
    EXPECT_EQ(third.timings.n_cached, 5);
    EXPECT_EQ(third.text, engine()->gen.generate(p3, n_predict(24), nullptr).text);

    // The same prompt again: everything but the last token is kept (its logits are needed).
    const GenerateResult again = e->gen.generate(p3, n_predict(24), nullptr);
    EXPECT_EQ(again.timings.n_cached, (int)p3.size() - 1);
    EXPECT_EQ(again.timings.n_prompt_eval, 1);
    EXPECT_EQ(again.text, third.text);
}

TEST_F(GeneratorTest, NewSamplerOnACachedPrefixSeesTheWholePrompt) {
    // The repeat penalty looks at the sampler's history: a sampler set for a second request must see the cached
    // prefix too, or its text would differ from a fresh session's.
    SamplerParams sp = Engine::greedy();
    sp.repeat_penalty = 1.5f;
    const int n_vocab = model_->info().n_vocab;
    auto e = engine();
    Sampler first(sp, n_vocab);
    e->gen.set_sampler(first);
    e->gen.generate(prompt(), n_predict(16), nullptr);
    std::vector<int32_t> p2 = e->gen.tokens();
    const std::vector<int32_t> more = encode(" Then a dog came.", false);
    p2.insert(p2.end(), more.begin(), more.end());
    Sampler second(sp, n_vocab);
    e->gen.set_sampler(second);
    const GenerateResult cached = e->gen.generate(p2, n_predict(32), nullptr);
    EXPECT_EQ(cached.timings.n_cached, 5 + 15);

    auto fresh = engine();
    Sampler third(sp, n_vocab);
    fresh->gen.set_sampler(third);
    const GenerateResult ref = fresh->gen.generate(p2, n_predict(32), nullptr);
    EXPECT_EQ(cached.text, ref.text);
    EXPECT_NE(ref.text, engine()->gen.generate(p2, n_predict(32), nullptr).text);  // the penalty does matter here
}

TEST_F(GeneratorTest, SessionUsedElsewhereIsStartedAfresh) {
    auto e = engine();
    e->gen.generate(prompt(), n_predict(8), nullptr);
    e->session.truncate(2);  // behind the generator's back
    const GenerateResult r = e->gen.generate(prompt(), n_predict(64), nullptr);
    EXPECT_EQ(r.timings.n_cached, 0);
    EXPECT_EQ(r.text, *greedy_text_);
}

TEST_F(GeneratorTest, BadPromptsThrowAndLeaveTheCacheAlone) {
    auto e = engine(16);
    EXPECT_THROW(e->gen.generate({}, n_predict(4), nullptr), Error);
    e->gen.generate(prompt(), n_predict(4), nullptr);
    const std::vector<int32_t> before = e->gen.tokens();
    const std::vector<int32_t> long_prompt(17, prompt()[1]);
    try {
        e->gen.generate(long_prompt, n_predict(4), nullptr);
        FAIL() << "expected ember::Error";
    } catch (const Error& err) {
        EXPECT_NE(std::string(err.what()).find("n_ctx = 16"), std::string::npos) << err.what();
    }
    EXPECT_EQ(e->gen.tokens(), before);
}

TEST_F(GeneratorTest, ChatSessionReusesEarlierTurnsAndMatchesAFreshConversation) {
    auto e = engine();
    ChatSession chat(e->gen, "plain");
    chat.add("system", "Be nice.");
    const GenerateResult t1 = chat.send("Tell me a story.", n_predict(12), nullptr);
    EXPECT_EQ(t1.timings.n_cached, 0);
    const GenerateResult t2 = chat.send("What happened next?", n_predict(12), nullptr);
    EXPECT_GT(t2.timings.n_cached, t1.timings.n_prompt);  // the first prompt and part of the reply
    EXPECT_LT(t2.timings.n_prompt_eval, t2.timings.n_prompt - t1.timings.n_prompt);
    ASSERT_EQ(chat.messages().size(), 5u);
    EXPECT_EQ(chat.messages()[2].role, "assistant");
    EXPECT_EQ(chat.messages()[4].role, "assistant");
    EXPECT_FALSE(chat.messages()[2].content.empty());
    EXPECT_NE(chat.messages()[2].content[0], ' ');  // the space after "Assistant:" is the format's

    // The same history in a fresh session gives the same second reply.
    auto fresh = engine();
    ChatSession replay(fresh->gen, "plain");
    for (size_t i = 0; i < 3; i++) replay.add(chat.messages()[i].role, chat.messages()[i].content);
    const GenerateResult r2 = replay.send("What happened next?", n_predict(12), nullptr);
    EXPECT_EQ(r2.timings.n_cached, 0);
    EXPECT_EQ(r2.text, t2.text);
    EXPECT_EQ(chat_tokenize(model_->tokenizer(), "plain", replay.messages()).size(),
              chat_tokenize(model_->tokenizer(), "plain", chat.messages()).size());
}

TEST_F(GeneratorTest, ChatSessionStopsWhenTheConversationNoLongerFits) {
    auto e = engine(32);
    ChatSession chat(e->gen, "plain");
    const GenerateResult r = chat.send(std::string(200, 'a'), n_predict(4), nullptr);
    EXPECT_EQ(r.finish, FinishReason::FINISH_CONTEXT_FULL);
    EXPECT_GT(r.timings.n_prompt, 32);
    EXPECT_EQ(r.timings.n_prompt_eval, 0);
    EXPECT_TRUE(chat.messages().empty());
    EXPECT_THROW(ChatSession(e->gen, "no-such-template"), Error);
}
