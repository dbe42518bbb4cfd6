// The stdin-driven modes of ember-cli: -cnv (chat through a template) and -i (continue raw text). They read lines
// and print; the engine's ChatSession and Generator do the rest.
#include <cstdio>
#include <iostream>

#include "apps/cli/cli.h"
#include "engine/chat-session.h"

namespace ember {

namespace {

// Prints the input marker and reads one line; false at EOF.
bool read_user_line(std::string* line) {
    std::fputs("\n> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, *line)) return false;
    if (!line->empty() && line->back() == '\r') line->pop_back();
    return true;
}

// --chat-template NAME, else the model's tokenizer.chat_template when recognised, else "plain" (logged).
std::string choose_template(const Model& model, const CliParams& params) {
    if (!params.chat_template.empty()) {
        std::fprintf(stderr, "chat: using template '%s' (--chat-template)\n", params.chat_template.c_str());
        return params.chat_template;
    }
    const std::string text = model.chat_template();
    const std::string name = chat_detect(text);
    if (!name.empty()) {
        std::fprintf(stderr, "chat: using template '%s' recognised from tokenizer.chat_template\n", name.c_str());
        return name;
    }
    std::fprintf(stderr, "chat: %s; using the plain 'User: ... / Assistant:' format (choose one with "
                         "--chat-template NAME)\n",
                 text.empty() ? "the model has no tokenizer.chat_template" : "tokenizer.chat_template not recognised");
    return "plain";
}

}  // namespace

void cli_conversation(Generator& gen, const CliParams& params, GenerateTimings* total) {
    ChatSession chat(gen, choose_template(gen.model(), params));
    if (!params.system_prompt.empty()) chat.add("system", params.system_prompt);
    std::string first = params.prompt;  // -p is the first user turn
    for (;;) {
        std::string line;
        if (!first.empty()) {
            line = first;
            first.clear();
        } else if (!read_user_line(&line)) {
            break;
        }
        const GenerateResult r = chat.send(line, params.generate, cli_print_text);
        *total += r.timings;
        if (r.timings.n_prompt_eval > 0)
            std::fprintf(stderr, "[chat: %d prompt tokens, %d reused from the previous turn]\n", r.timings.n_prompt,
                         r.timings.n_cached);
        cli_print_finish(r, gen.session());
        if (r.finish == FinishReason::FINISH_CONTEXT_FULL) break;
    }
    std::fputs("\n", stdout);
}

void cli_interactive(Generator& gen, const CliParams& params, const std::vector<int32_t>& prompt,
                     GenerateTimings* total) {
    const Tokenizer& tok = gen.model().tokenizer();
    auto generate = [&](const std::vector<int32_t>& tokens) {
        if ((int64_t)tokens.size() > gen.session().n_ctx()) {
            std::fprintf(stderr, "\ncontext full: %zu tokens do not fit n_ctx = %d; stopping\n", tokens.size(),
                         gen.session().n_ctx());
            return false;
        }
        const GenerateResult r = gen.generate(tokens, params.generate, cli_print_text);
        *total += r.timings;
        cli_print_finish(r, gen.session());
        return r.finish != FinishReason::FINISH_CONTEXT_FULL;
    };
    if (!prompt.empty() && !generate(prompt)) return;  // the prompt was given: continue it first
    std::string line;
    while (read_user_line(&line)) {
        std::vector<int32_t> context = gen.tokens();
        const std::vector<int32_t> more = tok.encode(line + "\n", context.empty() && tok.add_bos_default(), true);
        context.insert(context.end(), more.begin(), more.end());
        if (context.empty() || !generate(context)) break;
    }
    std::fputs("\n", stdout);
}

}  // namespace ember
