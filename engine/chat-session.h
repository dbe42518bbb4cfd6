// A conversation over one Generator: the history is kept as messages and every turn sends all of it through a chat
// template (engine/chat-template.h), generating with the template's stop strings. Each turn's prompt starts with
// the previous turn's text, so the Generator evaluates only what is new: the end of the last reply as the template
// closes it, and the new user message.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/chat-template.h"
#include "engine/generator.h"

namespace ember {

// The prompt for `msgs` in format `template_name`, ending with the assistant prompt, as tokens: BOS as the
// tokenizer adds it by default, special-token markers parsed. For callers that hold the history themselves.
std::vector<int32_t> chat_tokenize(const Tokenizer& tok, const std::string& template_name,
                                   const std::vector<ChatMessage>& msgs);

class ChatSession {
public:
    // template_name: one of chat_template_names(); throws ember::Error naming it otherwise.
    ChatSession(Generator& gen, const std::string& template_name);

    // Appends a message without generating (a system prompt, earlier turns).
    void add(const std::string& role, const std::string& content);
    // Appends the user's message, generates the assistant's reply with params.stop and the template's stop strings,
    // streaming it through on_text, and appends the reply (leading whitespace trimmed: formats that put a space
    // after "Assistant:" put it back) to the history. When the conversation with the new message no longer fits the
    // context, nothing is generated or appended and the result is FINISH_CONTEXT_FULL with only n_prompt set.
    GenerateResult send(const std::string& user_text, const GenerateParams& params, const TextCallback& on_text);

    const std::vector<ChatMessage>& messages() const { return msgs_; }
    const std::string& template_name() const { return template_; }

private:
    Generator& gen_;
    std::string template_;
    std::vector<std::string> stops_;  // the template's
    std::vector<ChatMessage> msgs_;
};

}  // namespace ember
