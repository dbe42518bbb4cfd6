// Chat formats: each one's exact text for a system + user + assistant + user conversation (written by hand from
// the publisher's documented layout), detection from template text, and errors.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "engine/chat-template.h"
#include "engine/error.h"

using namespace ember;

namespace {

const std::vector<ChatMessage> kChat = {
    {"system", "You are terse."},
    {"user", "Hi"},
    {"assistant", "Hello."},
    {"user", "Bye?"},
};

// Expected prompt (with the assistant prompt) for kChat in every format.
const std::map<std::string, std::string> kExpected = {
    {"chatml",
     "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
     "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye?<|im_end|>\n<|im_start|>assistant\n"},
    {"llama2", "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye? [/INST]"},
    {"llama3",
     "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nBye?<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"mistral-v1", " [INST] You are terse.\n\nHi [/INST] Hello.</s> [INST] Bye? [/INST]"},
    {"mistral-v3", "[INST] Hi[/INST] Hello.</s>[INST] You are terse.\n\nBye?[/INST]"},
    {"mistral-v3-tekken", "[INST]Hi[/INST]Hello.</s>[INST]You are terse.\n\nBye?[/INST]"},
    {"mistral-v7", "[SYSTEM_PROMPT] You are terse.[/SYSTEM_PROMPT][INST] Hi[/INST] Hello.</s>[INST] Bye?[/INST]"},
    {"mistral-v7-tekken", "[SYSTEM_PROMPT]You are terse.[/SYSTEM_PROMPT][INST]Hi[/INST]Hello.</s>[INST]Bye?[/INST]"},
    {"zephyr",
     "<|system|>\nYou are terse.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello.</s>\n<|user|>\nBye?</s>\n"
     "<|assistant|>\n"},
    {"gemma",
     "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
     "<start_of_turn>user\nBye?<end_of_turn>\n<start_of_turn>model\n"},
    {"phi3",
     "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n<|user|>\nBye?<|end|>\n"
     "<|assistant|>\n"},
    {"phi4",
     "<|im_start|>system<|im_sep|>You are terse.<|im_end|><|im_start|>user<|im_sep|>Hi<|im_end|>"
     "<|im_start|>assistant<|im_sep|>Hello.<|im_end|><|im_start|>user<|im_sep|>Bye?<|im_end|>"
     "<|im_start|>assistant<|im_sep|>"},
    {"deepseek",
     "You are terse.\n### Instruction:\nHi\n### Response:\nHello.\n<|EOT|>\n### Instruction:\nBye?\n### Response:\n"},
    {"deepseek2", "You are terse.\n\nUser: Hi\n\nAssistant: Hello.<｜end▁of▁sentence｜>User: Bye?\n\nAssistant:"},
    {"deepseek3", "You are terse.<｜User｜>Hi<｜Assistant｜>Hello.<｜end▁of▁sentence｜><｜User｜>Bye?<｜Assistant｜>"},
    {"vicuna", "You are terse. USER: Hi ASSISTANT: Hello.</s>USER: Bye? ASSISTANT:"},
    {"alpaca",
     "You are terse.\n\n### Instruction:\nHi\n\n### Response:\nHello.\n\n### Instruction:\nBye?\n\n### Response:\n"},
    {"plain", "You are terse.\n\nUser: Hi\nAssistant: Hello.\nUser: Bye?\nAssistant:"},
};

}  // namespace

TEST(ChatTemplate, EveryFormatHasAnExactExpectation) {
    EXPECT_EQ(chat_template_names().size(), kExpected.size());
    EXPECT_EQ(chat_template_names().back(), "plain");
    for (const std::string& name : chat_template_names()) {
        ASSERT_TRUE(kExpected.count(name)) << "no expected text for " << name;
        EXPECT_EQ(chat_format(name, kChat, true), kExpected.at(name)) << name;
    }
}

TEST(ChatTemplate, WithoutAssistantPrompt) {
    EXPECT_EQ(chat_format("chatml", {{"user", "Hi"}}, false), "<|im_start|>user\nHi<|im_end|>\n");
    EXPECT_EQ(chat_format("llama3", {{"user", "Hi"}}, false),
              "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
    EXPECT_EQ(chat_format("plain", {{"user", "Hi"}}, false), "User: Hi\n");
    EXPECT_EQ(chat_format("plain", {{"user", "Hi"}}, true), "User: Hi\nAssistant:");
}

TEST(ChatTemplate, MergedSystemWithoutUserMessage) {
    EXPECT_EQ(chat_format("gemma", {{"system", "S"}}, true),
              "<start_of_turn>user\nS\n\n<end_of_turn>\n<start_of_turn>model\n");
    EXPECT_EQ(chat_format("llama2", {{"user", "Hi"}}, true), "[INST] Hi [/INST]");
}

TEST(ChatTemplate, HistoryPrefixIsStable) {
    // A conversation's text is a prefix of the next turn's (what lets the CLI evaluate only the new tokens),
    // for every format that places the system text where it stays.
    for (const std::string& name : chat_template_names()) {
        if (name == "mistral-v3" || name == "mistral-v3-tekken") continue;  // system moves to the last user turn
        std::vector<ChatMessage> turn1(kChat.begin(), kChat.begin() + 2);
        const std::string a = chat_format(name, turn1, false);
        const std::string b = chat_format(name, kChat, true);
        EXPECT_EQ(b.compare(0, a.size(), a), 0) << name;
    }
}

TEST(ChatTemplate, DetectsPublishedTemplates) {
    const std::map<std::string, std::string> samples = {
        {"chatml", "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                   "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"},
        {"phi4", "{{'<|im_start|>' + message['role'] + '<|im_sep|>' + message['content'] + '<|im_end|>'}}"},
        {"llama3", "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
                   "message['content'] | trim + '<|eot_id|>' %}"},
        {"llama2", "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + "
                   "system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% endif %}{{ bos_token + "
                   "'[INST] ' + content.strip() + ' [/INST]' }}"},
        {"mistral-v1", "{{ ' [INST] ' + message['content'] + ' [/INST]' }}{{ ' ' + message['content'] + eos_token }}"},
        {"mistral-v3", "{%- if tools %}[AVAILABLE_TOOLS]{% endif %}{{ '[INST] ' + message['content'] + '[/INST]' }}"},
        {"mistral-v3-tekken", "{{- '[INST]' + message['content'] + '[/INST]' }}"},
        {"mistral-v7", "{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}{{ '[INST] ' }}"},
        {"mistral-v7-tekken", "{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}{{- '[INST]' }}"},
        {"gemma", "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"},
        {"phi3", "{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}"},
        {"zephyr", "{{ '<|user|>\n' + message['content'] + eos_token }}{% if add_generation_prompt %}"
                   "{{ '<|assistant|>' }}{% endif %}"},
        {"deepseek3", "{{'<｜User｜>' + message['content']}}{{'<｜Assistant｜>'}}"},
        {"deepseek", "{{'### Instruction:\\n' + message['content'] + '\\n'}}{{'### Response:\\n' + "
                     "message['content'] + '\\n<|EOT|>\\n'}}"},
        {"deepseek2", "{{ 'User: ' + message['content'] + '\n\n' }}{{ 'Assistant: ' + message['content'] + "
                      "eos_token }}"},
        {"alpaca", "{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}{{ '### Response:\\n' }}"},
        {"vicuna", "{{ 'USER: ' + message['content'] + ' ' }}{{ 'ASSISTANT: ' + message['content'] + '</s>' }}"},
    };
    for (const auto& kv : samples) EXPECT_EQ(chat_detect(kv.second), kv.first) << kv.second;
    EXPECT_EQ(chat_detect(""), "");
    EXPECT_EQ(chat_detect("{{ messages[0]['content'] }}"), "");
}

TEST(ChatTemplate, StopStrings) {
    EXPECT_EQ(chat_stop_strings("chatml"), std::vector<std::string>{"<|im_end|>"});
    EXPECT_EQ(chat_stop_strings("plain"), std::vector<std::string>{"\nUser:"});
    for (const std::string& name : chat_template_names()) EXPECT_FALSE(chat_stop_strings(name).empty()) << name;
}

TEST(ChatTemplate, Errors) {
    auto message_of = [](auto&& f) {
        try {
            f();
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    std::string m = message_of([] { chat_format("nope", kChat, true); });
    EXPECT_NE(m.find("'nope'"), std::string::npos) << m;
    EXPECT_NE(m.find("chatml"), std::string::npos) << m;  // lists the known names
    m = message_of([] { chat_format("chatml", {{"tool", "x"}}, true); });
    EXPECT_NE(m.find("role 'tool'"), std::string::npos) << m;
    m = message_of([] { chat_format("gemma", {{"user", "a"}, {"system", "b"}}, true); });
    EXPECT_NE(m.find("message 1"), std::string::npos) << m;
}
