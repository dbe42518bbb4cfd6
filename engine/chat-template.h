// Chat prompt formats, chosen by name or recognised from a model's tokenizer.chat_template (Jinja) text by content,
// as llama.cpp's built-in templates do; no Jinja is evaluated. Each format is written from its publisher's
// documented layout (model cards, Meta's and Mistral's reference code, FastChat); see chat-template.cpp.
// The BOS token is not part of the text: the caller's tokenizer adds it. The text holds special-token markers
// ("<|im_end|>", "</s>", ...), so the caller tokenizes it with parse_special = true.
#pragma once
#include <string>
#include <vector>

namespace ember {

struct ChatMessage {
    std::string role;     // "system", "user" or "assistant"
    std::string content;
};

// Every name chat_format takes, "plain" last (the fallback for models without a recognised template).
const std::vector<std::string>& chat_template_names();

// The name of the format `template_text` (a tokenizer.chat_template value) follows, "" when not recognised.
std::string chat_detect(const std::string& template_text);

// The conversation as one prompt; with add_assistant_prompt it ends with what opens an assistant turn.
// Throws ember::Error naming the template and message on an unknown name or an unsupported role or order.
std::string chat_format(const std::string& name, const std::vector<ChatMessage>& msgs, bool add_assistant_prompt);

// Texts that end an assistant turn in this format, as they appear when special tokens are rendered; the caller
// stops generating when its output ends with one (the end-of-generation token ends a turn too).
std::vector<std::string> chat_stop_strings(const std::string& name);

}  // namespace ember
