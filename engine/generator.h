// Text generation over one session, shared by every front end (ember-cli, the server): evaluates a prompt, keeping
// the longest prefix the session's KV cache already holds, then samples one token at a time and streams its text
// through a callback until an end-of-generation token, a stop string, n_predict tokens, a full context, or the
// callback asks to stop. generate() runs it all; start/next/advance run it a step at a time for a caller that evaluates
// the session itself (a server batching many generators). No I/O: callers print, log and format the timings.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/ember.h"
#include "engine/sampler.h"
#include "engine/text-stream.h"

namespace ember {

enum class FinishReason {
    FINISH_EOG,           // an end-of-generation token was sampled ("stop")
    FINISH_STOP_STRING,   // the text reached one of GenerateParams::stop ("stop")
    FINISH_LENGTH,        // n_predict tokens were generated ("length")
    FINISH_CONTEXT_FULL,  // the KV cache holds n_ctx tokens ("length")
    FINISH_CANCELLED,     // the text callback returned false ("cancelled")
};

// The OpenAI-style name of a finish reason: "stop", "length" or "cancelled".
const char* finish_reason_name(FinishReason reason);

struct GenerateParams {
    int n_predict = -1;             // tokens to generate at most; < 0: until end of generation or a full context
    bool ignore_eos = false;        // never sample end-of-generation tokens (their logits are set to -inf)
    std::vector<std::string> stop;  // generation ends when the text reaches one; it is not emitted
    std::vector<std::pair<int32_t, float>> logit_bias;  // (token, bias) added to its logit before sampling (OpenAI's
                                                        // logit_bias; -inf bans the token)
};

// Counts and wall-clock times of one generation (sum several with +=, for llama.cpp-style totals).
struct GenerateTimings {
    int n_prompt = 0;       // tokens in the prompt
    int n_cached = 0;       // of them, kept from the KV cache of earlier generations
    int n_prompt_eval = 0;  // of them, evaluated now: n_prompt - n_cached
    double prompt_ms = 0;   // evaluating the n_prompt_eval tokens
    int n_generated = 0;    // tokens generated (an end-of-generation token is not counted)
    int n_sample = 0;       // sampler runs (an end-of-generation token is counted)
    double sample_ms = 0;
    int n_eval = 0;         // generated tokens evaluated; the last one is not when n_predict or n_ctx ends generation
    double eval_ms = 0;

    double generate_ms() const { return sample_ms + eval_ms; }  // producing the n_generated tokens
    GenerateTimings& operator+=(const GenerateTimings& o);
};

struct GenerateResult {
    std::string text;  // everything passed to the callback, in order; never the stop string
    FinishReason finish = FinishReason::FINISH_LENGTH;
    std::string stop;  // the stop string that ended generation (FINISH_STOP_STRING), else ""
    GenerateTimings timings;
};

// Receives text as soon as it is safe to show (see engine/text-stream.h); returns false to stop generating.
using TextCallback = std::function<bool(const std::string& piece)>;

// What a step of a generation driven from outside needs evaluated: tokens for the generator's session, appended at
// its n_past() (a chunk of the prompt, or the token generated last).
struct GenerateStep {
    const int32_t* tokens = nullptr;  // n_tokens ids, valid until advance()
    int n_tokens = 0;
};

class Generator {
public:
    // The session must be driven only through this generator, which tracks the tokens in its KV cache (when the
    // session's n_past says otherwise, the next generation starts from an empty cache).
    Generator(const Model& model, Session& session, Sampler& sampler);

    // Continues `prompt`, the whole text so far as tokens (BOS included). The longest prefix the KV cache already
    // holds is kept and the rest evaluated (at least the last token, for fresh logits). Every prompt token goes to
    // sampler.accept, cached or not, so the repeat-penalty history ends with the prompt as in llama.cpp's server.
    // A control token whose rendered text equals a stop string ends generation like that stop string.
    // on_text may be empty. Throws ember::Error on an empty prompt, one longer than n_ctx, a token or a logit_bias
    // token outside the vocabulary (nothing is evaluated then).
    GenerateResult generate(const std::vector<int32_t>& prompt, const GenerateParams& params,
                            const TextCallback& on_text);

    // The same generation in steps, for a caller that evaluates the session itself, e.g. together with other
    // sessions in one sessions_eval (engine/server-slots.h); generate() is exactly this loop:
    //     gen.start(prompt, params, on_text);
    //     while (!gen.done()) { GenerateStep s = gen.next(0); session.eval(s's tokens); gen.advance(); }
    // start() checks and throws as generate() does and evaluates nothing. next(max_tokens) gives up to max_tokens
    // (<= 0: all) of the prompt tokens still to evaluate, or the token generated last. advance() records that the
    // session evaluated them; once the whole prompt is in, it samples the next token and streams its text, which
    // may end the generation. The step time (next() to advance()) counts as prompt or eval time.
    void start(const std::vector<int32_t>& prompt, const GenerateParams& params, TextCallback on_text);
    GenerateStep next(int max_tokens);
    void advance();
    // Ends the running generation between steps with FINISH_CANCELLED; on_text gets nothing more.
    void cancel();
    bool done() const { return !running_; }
    // The generation so far; final once done().
    const GenerateResult& result() const { return res_; }

    // The text so far as tokens: those in the KV cache, plus the last generated one when generation ended before
    // evaluating it. Passing this with new tokens appended to generate() evaluates only the new ones.
    std::vector<int32_t> tokens() const;

    // Uses `sampler` from the next generate() on, e.g. for a server slot whose requests each bring their own
    // sampling parameters: the KV cache is still reused, and the prompt fills the new sampler's history.
    void set_sampler(Sampler& sampler) { sampler_ = &sampler; }

    const Model& model() const { return model_; }
    const Session& session() const { return session_; }

private:
    // Samples (and accepts) the next token from the last logits with params' biases; counts it in `t`.
    int32_t sample(const GenerateParams& params, GenerateTimings& t);
    // After the prompt or a generated token was evaluated: samples the next token, streams its text, and either
    // queues it for evaluation or ends the generation.
    void produce();
    void finish(FinishReason reason);
    void emit(const std::string& text);  // to res_.text and on_text_, until the callback cancels

    const Model& model_;
    Session& session_;
    Sampler* sampler_;
    std::vector<int32_t> cached_;    // the tokens in the KV cache, in order
    int32_t unevaluated_ = -1;       // the last generated token when not evaluated; -1: none
    std::vector<float> biased_;      // (n_vocab) logits with logit_bias added and, for ignore_eos, EOG tokens masked
    std::vector<int32_t> step_;      // the tokens generate() evaluates in one step

    // The running generation (start() to done()).
    bool running_ = false;
    bool in_prompt_ = false;         // pending_ holds prompt tokens, else the one generated token
    bool cancelled_ = false;         // on_text_ returned false
    GenerateParams params_;
    TextCallback on_text_;
    TextStream stream_{{}};
    GenerateResult res_;
    std::vector<int32_t> pending_;   // tokens still to evaluate: [pending_pos_, size)
    size_t pending_pos_ = 0;
    int step_n_ = 0;                 // tokens handed out by next(), 0: no step in flight
    std::chrono::steady_clock::time_point step_t0_;
};

}  // namespace ember
