#include "engine/chat-template.h"

#include <string>

#include "engine/error.h"

namespace ember {

namespace {

// One format: each message is pre + content + suf for its role. Formats without a system turn merge the system
// text into a user message (wrapped in merge_pre/merge_suf), as their publishers' reference code does.
struct ChatFormat {
    const char* name;
    const char* sys_pre;         // nullptr: no system turn, merge the system text into a user message
    const char* sys_suf;
    const char* merge_pre;       // around merged system text
    const char* merge_suf;
    bool merge_into_last;        // merge into the last user message (Mistral v3 and Tekken), else the first
    const char* first_user_pre;  // the first user message's prefix when it differs (BOS between turns)
    const char* user_pre;
    const char* user_suf;
    const char* asst_pre;
    const char* asst_suf;
    const char* gen;             // opens the assistant turn
    std::vector<std::string> stops;
};

// Sources of each layout:
//   chatml: OpenAI ChatML / Qwen, Hermes model cards.   llama2: Meta's llama reference chat_completion.
//   llama3: Meta Llama 3 model card.                    mistral-*: Mistral cookbook "tokenization/templates"
//   (v1: system before the first user message; v3 and Tekken: before the last one, as mistral-common does).
//   zephyr: HuggingFaceH4/zephyr-7b-beta card.  gemma: Gemma card (no system role: merged into the first turn).
//   phi3 / phi4: Microsoft model cards.  deepseek: deepseek-coder-instruct card.  deepseek2: DeepSeek-V2-Chat card.
//   deepseek3: DeepSeek-V3 / R1 card.  vicuna: FastChat vicuna_v1.1.  alpaca: Stanford Alpaca prompt.
const std::vector<ChatFormat>& formats() {
    static const std::vector<ChatFormat> all = {
        {"chatml", "<|im_start|>system\n", "<|im_end|>\n", "", "", false, nullptr, "<|im_start|>user\n",
         "<|im_end|>\n", "<|im_start|>assistant\n", "<|im_end|>\n", "<|im_start|>assistant\n", {"<|im_end|>"}},
        {"llama2", nullptr, nullptr, "<<SYS>>\n", "\n<</SYS>>\n\n", false, "[INST] ", "<s>[INST] ", " [/INST]", " ",
         " </s>", "", {"</s>"}},
        {"llama3", "<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>", "", "", false, nullptr,
         "<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>",
         "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>",
         "<|start_header_id|>assistant<|end_header_id|>\n\n", {"<|eot_id|>", "<|end_of_text|>"}},
        {"mistral-v1", nullptr, nullptr, "", "\n\n", false, nullptr, " [INST] ", " [/INST]", " ", "</s>", "",
         {"</s>"}},
        {"mistral-v3", nullptr, nullptr, "", "\n\n", true, nullptr, "[INST] ", "[/INST]", " ", "</s>", "", {"</s>"}},
        {"mistral-v3-tekken", nullptr, nullptr, "", "\n\n", true, nullptr, "[INST]", "[/INST]", "", "</s>", "",
         {"</s>"}},
        {"mistral-v7", "[SYSTEM_PROMPT] ", "[/SYSTEM_PROMPT]", "", "", false, nullptr, "[INST] ", "[/INST]", " ",
         "</s>", "", {"</s>"}},
        {"mistral-v7-tekken", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "", "", false, nullptr, "[INST]", "[/INST]", "",
         "</s>", "", {"</s>"}},
        {"zephyr", "<|system|>\n", "</s>\n", "", "", false, nullptr, "<|user|>\n", "</s>\n", "<|assistant|>\n",
         "</s>\n", "<|assistant|>\n", {"</s>", "<|user|>"}},
        {"gemma", nullptr, nullptr, "", "\n\n", false, nullptr, "<start_of_turn>user\n", "<end_of_turn>\n",
         "<start_of_turn>model\n", "<end_of_turn>\n", "<start_of_turn>model\n", {"<end_of_turn>"}},
        {"phi3", "<|system|>\n", "<|end|>\n", "", "", false, nullptr, "<|user|>\n", "<|end|>\n", "<|assistant|>\n",
         "<|end|>\n", "<|assistant|>\n", {"<|end|>", "<|endoftext|>"}},
        {"phi4", "<|im_start|>system<|im_sep|>", "<|im_end|>", "", "", false, nullptr, "<|im_start|>user<|im_sep|>",
         "<|im_end|>", "<|im_start|>assistant<|im_sep|>", "<|im_end|>", "<|im_start|>assistant<|im_sep|>",
         {"<|im_end|>"}},
        {"deepseek", "", "\n", "", "", false, nullptr, "### Instruction:\n", "\n", "### Response:\n", "\n<|EOT|>\n",
         "### Response:\n", {"<|EOT|>", "### Instruction:"}},
        {"deepseek2", "", "\n\n", "", "", false, nullptr, "User: ", "\n\n", "Assistant: ",
         "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "Assistant:",
         {"<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "User:"}},
        {"deepseek3", "", "", "", "", false, nullptr, "<\xEF\xBD\x9CUser\xEF\xBD\x9C>", "",
         "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
         "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>",
         {"<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"}},
        {"vicuna", "", " ", "", "", false, nullptr, "USER: ", " ", "ASSISTANT: ", "</s>", "ASSISTANT:",
         {"</s>", "USER:"}},
        {"alpaca", "", "\n\n", "", "", false, nullptr, "### Instruction:\n", "\n\n", "### Response:\n", "\n\n",
         "### Response:\n", {"### Instruction:"}},
        {"plain", "", "\n\n", "", "", false, nullptr, "User: ", "\n", "Assistant: ", "\n", "Assistant:",
         {"\nUser:"}},
    };
    return all;
}

const ChatFormat& find_format(const std::string& name) {
    for (const ChatFormat& f : formats())
        if (name == f.name) return f;
    std::string known;
    for (const ChatFormat& f : formats()) known += std::string(known.empty() ? "" : ", ") + f.name;
    throw Error("chat template: unknown name '" + name + "'; expected one of: " + known);
}

bool has(const std::string& text, const char* needle) { return text.find(needle) != std::string::npos; }

}  // namespace

const std::vector<std::string>& chat_template_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> v;
        for (const ChatFormat& f : formats()) v.push_back(f.name);
        return v;
    }();
    return names;
}

std::string chat_detect(const std::string& t) {
    // Most specific markers first: phi4 is ChatML with <|im_sep|>, phi3 and zephyr share <|user|>.
    if (has(t, "<|im_start|>")) return has(t, "<|im_sep|>") ? "phi4" : "chatml";
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) return "llama3";
    if (has(t, "[SYSTEM_PROMPT]")) return has(t, "[SYSTEM_PROMPT] ") ? "mistral-v7" : "mistral-v7-tekken";
    if (has(t, "[INST]")) {
        if (has(t, "<<SYS>>")) return "llama2";
        if (has(t, " [/INST]")) return "mistral-v1";                 // ' [INST] ' + content + ' [/INST]'
        return has(t, "[INST] ") ? "mistral-v3" : "mistral-v3-tekken";  // '[INST] ' vs '[INST]'
    }
    if (has(t, "<start_of_turn>")) return "gemma";
    if (has(t, "<|user|>") && has(t, "<|end|>")) return "phi3";
    if (has(t, "<|user|>") && has(t, "<|assistant|>")) return "zephyr";
    if (has(t, "<\xEF\xBD\x9CUser\xEF\xBD\x9C>")) return "deepseek3";
    if (has(t, "### Instruction:") && has(t, "<|EOT|>")) return "deepseek";
    if (has(t, "User: ") && has(t, "Assistant: ")) return "deepseek2";
    if (has(t, "### Instruction") && has(t, "### Response")) return "alpaca";
    if (has(t, "USER:") && has(t, "ASSISTANT:")) return "vicuna";
    return "";
}

std::string chat_format(const std::string& name, const std::vector<ChatMessage>& msgs, bool add_assistant_prompt) {
    const ChatFormat& f = find_format(name);
    const bool merge = f.sys_pre == nullptr;

    // Formats without a system turn: one system message, first, merged into a user message.
    std::string system;
    bool has_system = false;
    int merge_at = -1;  // index of the user message that takes the system text
    if (merge) {
        for (size_t i = 0; i < msgs.size(); i++) {
            if (msgs[i].role != "system") continue;
            if (i != 0)
                throw Error("chat template '" + name + "': message " + std::to_string(i) +
                            " is a system message; this format takes one, first");
            has_system = true;
            system = msgs[i].content;
        }
        for (size_t i = 0; i < msgs.size(); i++)
            if (msgs[i].role == "user" && (merge_at < 0 || f.merge_into_last)) merge_at = (int)i;
    }

    std::string out;
    bool first_user = true;
    auto user_turn = [&](const std::string& content) {
        out += first_user && f.first_user_pre ? f.first_user_pre : f.user_pre;
        out += content;
        out += f.user_suf;
        first_user = false;
    };
    if (has_system && merge_at < 0) user_turn(f.merge_pre + system + f.merge_suf);  // no user message to take it

    for (size_t i = 0; i < msgs.size(); i++) {
        const ChatMessage& m = msgs[i];
        if (m.role == "system") {
            if (!merge) out += f.sys_pre + m.content + f.sys_suf;
        } else if (m.role == "user") {
            user_turn((int)i == merge_at && has_system ? f.merge_pre + system + f.merge_suf + m.content : m.content);
        } else if (m.role == "assistant") {
            out += f.asst_pre + m.content + f.asst_suf;
        } else {
            throw Error("chat template '" + name + "': message " + std::to_string(i) + " has role '" + m.role +
                        "'; expected system, user or assistant");
        }
    }
    if (add_assistant_prompt) out += f.gen;
    return out;
}

std::vector<std::string> chat_stop_strings(const std::string& name) { return find_format(name).stops; }

}  // namespace ember
