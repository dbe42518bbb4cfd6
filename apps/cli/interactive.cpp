// The stdin-driven modes of ember-cli: -cnv (chat through a template) and -i (continue raw text).
#include <cstdio>
#include <iostream>

#include "apps/cli/cli.h"
#include "engine/chat-template.h"

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

int common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    size_t n = 0;
    while (n < a.size() && n < b.size() && a[n] == b[n]) n++;
    return (int)n;
}

}  // namespace

void cli_conversation(const Model& model, Generator& gen, const CliParams& params) {
    const Tokenizer& tok = model.tokenizer();
    const std::string name = choose_template(model, params);
    const std::vector<std::string> stops = chat_stop_strings(name);
    std::vector<ChatMessage> msgs;
    if (!params.system_prompt.empty()) msgs.push_back({"system", params.system_prompt});
    std::string first = params.prompt;  // -p is the first user turn
    for (;;) {
        std::string line;
        if (!first.empty()) {
            line = first;
            first.clear();
        } else if (!read_user_line(&line)) {
            break;
        }
        msgs.push_back({"user", line});
        const std::string text = chat_format(name, msgs, true);
        // Each turn formats the whole history; sync evaluates only the tokens past the common prefix.
        const std::vector<int32_t> tokens = tok.encode(text, tok.add_bos_default(), true);
        const int reused = common_prefix(gen.context(), tokens);
        if (!gen.sync(tokens)) break;
        std::fprintf(stderr, "[chat: %zu prompt tokens, %d reused from the previous turn]\n", tokens.size(), reused);
        const GenerateResult r = gen.generate(params.n_predict, stops);
        // The reply follows the generation prompt, often after a space the format puts back ("Assistant: ").
        const size_t start = r.text.find_first_not_of(" \t\n");
        msgs.push_back({"assistant", start == std::string::npos ? "" : r.text.substr(start)});
        if (r.reason == StopReason::STOP_CONTEXT_FULL) break;
    }
    std::fputs("\n", stdout);
}

void cli_interactive(const Model& model, Generator& gen, const CliParams& params) {
    const Tokenizer& tok = model.tokenizer();
    if (!gen.context().empty()) {  // the prompt was given: continue it first
        if (gen.generate(params.n_predict, {}).reason == StopReason::STOP_CONTEXT_FULL) return;
    }
    std::string line;
    while (read_user_line(&line)) {
        std::vector<int32_t> context = gen.context();
        const std::vector<int32_t> more = tok.encode(line + "\n", context.empty() && tok.add_bos_default(), true);
        context.insert(context.end(), more.begin(), more.end());
        if (!gen.sync(context)) break;
        if (gen.generate(params.n_predict, {}).reason == StopReason::STOP_CONTEXT_FULL) break;
    }
    std::fputs("\n", stdout);
}

}  // namespace ember
