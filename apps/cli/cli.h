// ember-cli's parts: options, printing, and the stdin-driven modes. Generation itself is engine/generator.h and
// engine/chat-session.h; this app reads input, prints text and reports timings.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ember.h"
#include "engine/generator.h"
#include "engine/sampler.h"

namespace ember {

struct CliParams {
    ModelParams model;
    SessionParams session;
    SamplerParams sampler;
    GenerateParams generate;     // -n (n_predict; -1 and -2: until end of generation or a full context), --ignore-eos
    std::string prompt;          // -p, or the contents of -f
    std::string prompt_file;     // -f
    std::string system_prompt;   // -sys (conversation mode)
    std::string chat_template;   // --chat-template NAME; "" = recognise the model's
    bool display_prompt = true;  // echo the prompt to stdout
    bool interactive = false;    // -i: after each reply, read a line from stdin and continue the text
    bool conversation = false;   // -cnv: chat through the model's template, one stdin line per user turn
    bool escape = true;          // process \n, \t, ... in -p and -sys (llama.cpp's default)
};

// Writes generated text to stdout at once (a TextCallback; never cancels).
bool cli_print_text(const std::string& text);
// Tells stderr why generation ended when the user should know: a full context.
void cli_print_finish(const GenerateResult& r, const Session& session);
// llama.cpp-style timings to stderr, summed over every generation of the run.
void cli_print_timings(const GenerateTimings& total, double load_ms);

// -cnv: the chat loop. -i: the raw continuation loop, first continuing `prompt` when it is not empty. Both read
// stdin until EOF and add each generation's timings to *total.
void cli_conversation(Generator& gen, const CliParams& params, GenerateTimings* total);
void cli_interactive(Generator& gen, const CliParams& params, const std::vector<int32_t>& prompt,
                     GenerateTimings* total);

}  // namespace ember
