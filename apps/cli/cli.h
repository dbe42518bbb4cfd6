// ember-cli's parts: options, the generator that evaluates, samples and prints, and the interactive modes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ember.h"
#include "engine/sampler.h"

namespace ember {

struct CliParams {
    ModelParams model;
    SessionParams session;
    SamplerParams sampler;
    std::string prompt;          // -p, or the contents of -f
    std::string prompt_file;     // -f
    std::string system_prompt;   // -sys (conversation mode)
    std::string chat_template;   // --chat-template NAME; "" = recognise the model's
    int n_predict = -1;          // tokens per reply; -1 (and -2): until end of generation or a full context
    bool ignore_eos = false;     // never sample end-of-generation tokens
    bool display_prompt = true;  // echo the prompt to stdout
    bool interactive = false;    // -i: after each reply, read a line from stdin and continue the text
    bool conversation = false;   // -cnv: chat through the model's template, one stdin line per user turn
    bool escape = true;          // process \n, \t, ... in -p and -sys (llama.cpp's default)
};

enum class StopReason { STOP_EOG, STOP_LENGTH, STOP_STRING, STOP_CONTEXT_FULL };

struct GenerateResult {
    std::string text;  // what was printed (stop strings removed)
    StopReason reason;
};

// Evaluation, sampling and printing for one session, with llama.cpp-style timings.
class Generator {
public:
    Generator(const Model& model, Session& session, Sampler& sampler, const CliParams& params);

    // Makes the KV cache hold exactly `tokens`: keeps the longest prefix already evaluated and evaluates the rest
    // (at least the last token, for fresh logits). Returns false, with a message, when they do not fit n_ctx.
    bool sync(const std::vector<int32_t>& tokens);
    // Samples, prints and evaluates until an end-of-generation token, n_predict tokens (< 0: no limit), a stop
    // string (held back from the output until it is known not to be one) or a full context.
    GenerateResult generate(int n_predict, const std::vector<std::string>& stops);

    // The text so far as tokens: those evaluated, plus the last one printed when generation stopped before
    // evaluating it (n_predict reached, context full).
    std::vector<int32_t> context() const;
    void print_timings(double load_ms) const;

private:
    void eval_timed(const std::vector<int32_t>& tokens, bool is_prompt);

    const Model& model_;
    Session& session_;
    Sampler& sampler_;
    const CliParams& params_;
    std::vector<int32_t> evaluated_;  // the tokens in the KV cache, in order
    int32_t unevaluated_ = -1;        // the last printed token, when not evaluated; -1: none
    std::vector<float> logits_buf_;   // (n_vocab) a copy to mask end-of-generation tokens with --ignore-eos
    double prompt_ms_ = 0, eval_ms_ = 0, sample_ms_ = 0;
    int n_prompt_ = 0, n_eval_ = 0, n_sample_ = 0;
};

// -cnv: the chat loop. -i: the raw continuation loop. Both read stdin until EOF.
void cli_conversation(const Model& model, Generator& gen, const CliParams& params);
void cli_interactive(const Model& model, Generator& gen, const CliParams& params);

}  // namespace ember
