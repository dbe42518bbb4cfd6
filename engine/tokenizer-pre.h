// Pre-tokenizers of byte-level BPE vocabularies: the regex list that llama.cpp applies for each
// tokenizer.ggml.pre value (src/llama-vocab.cpp, llm_tokenizer_bpe), run with PCRE2 (UTF + UCP), plus the flags
// llama.cpp ties to the same name (clean_spaces, ignore_merges, add_bos default).
// Splitting follows llama.cpp's unicode_regex_split: each regex in turn splits every piece the previous ones left;
// a match and the text between two matches both become pieces; a piece is the whole subject of the next regex, so
// lookaheads and `$` stop at its end.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

struct pcre2_real_code_8;

namespace ember {

struct PreTokenizerFlags {
    bool clean_spaces = true;    // decode removes the space before ?!., and in " 's" etc. (llama.cpp clean_spaces)
    bool ignore_merges = false;  // a piece that is itself a token is emitted whole, merges not applied
    bool add_bos = false;        // default of tokenizer.ggml.add_bos_token for this pre-tokenizer
};

class PreTokenizer {
public:
    // `name` is a tokenizer.ggml.pre value; "" (key absent) selects llama.cpp's "default" set, as llama.cpp does.
    // Throws ember::Error naming the value when llama.cpp does not know it or ember does not implement it.
    static std::unique_ptr<PreTokenizer> create(const std::string& name);
    ~PreTokenizer();
    PreTokenizer(const PreTokenizer&) = delete;
    PreTokenizer& operator=(const PreTokenizer&) = delete;

    // Splits valid UTF-8 (see utf8_sanitize) into pieces, as (byte offset, byte length), in order and covering the
    // whole text. Throws ember::Error naming the pre-tokenizer if PCRE2 fails (e.g. a resource limit).
    std::vector<std::pair<size_t, size_t>> split(const std::string& text) const;

    const std::string& name() const { return name_; }
    const PreTokenizerFlags& flags() const { return flags_; }
    const std::vector<std::string>& regexes() const { return regexes_; }  // as given to PCRE2

private:
    PreTokenizer() = default;
    std::string name_;
    PreTokenizerFlags flags_;
    std::vector<std::string> regexes_;
    std::vector<pcre2_real_code_8*> codes_;
};

// Every tokenizer.ggml.pre value PreTokenizer::create accepts, in table order.
std::vector<std::string> pre_tokenizer_names();

}  // namespace ember
