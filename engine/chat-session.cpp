#include "engine/chat-session.h"

namespace ember {

std::vector<int32_t> chat_tokenize(const Tokenizer& tok, const std::string& template_name,
                                   const std::vector<ChatMessage>& msgs) {
    return tok.encode(chat_format(template_name, msgs, true), tok.add_bos_default(), true);
}

ChatSession::ChatSession(Generator& gen, const std::string& template_name)
    : gen_(gen), template_(template_name), stops_(chat_stop_strings(template_name)) {}

void ChatSession::add(const std::string& role, const std::string& content) { msgs_.push_back({role, content}); }

GenerateResult ChatSession::send(const std::string& user_text, const GenerateParams& params,
                                 const TextCallback& on_text) {
    msgs_.push_back({"user", user_text});
    std::vector<int32_t> prompt;
    try {
        prompt = chat_tokenize(gen_.model().tokenizer(), template_, msgs_);
    } catch (...) {  // e.g. a role order the format refuses: leave the history as it was
        msgs_.pop_back();
        throw;
    }
    if ((int64_t)prompt.size() > gen_.session().n_ctx()) {
        msgs_.pop_back();
        GenerateResult full;
        full.finish = FinishReason::FINISH_CONTEXT_FULL;
        full.timings.n_prompt = (int)prompt.size();
        return full;
    }
    GenerateParams p = params;
    p.stop.insert(p.stop.end(), stops_.begin(), stops_.end());
    GenerateResult r = gen_.generate(prompt, p, on_text);
    const size_t start = r.text.find_first_not_of(" \t\n");
    msgs_.push_back({"assistant", start == std::string::npos ? "" : r.text.substr(start)});
    return r;
}

}  // namespace ember
