// Tokenizer::from_gguf and what the SentencePiece and BPE tokenizers share: reading and validating the vocabulary,
// special ids and flags, end-of-generation detection, the special-token partition and decode's space clean-up.
// Behaviour follows llama.cpp's llama_vocab::impl (load, tokenizer_st_partition, detokenize).
#include "engine/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <limits>

#include "engine/error.h"

namespace ember {

namespace {

const char* const kKeyModel = "tokenizer.ggml.model";
const char* const kKeyPre = "tokenizer.ggml.pre";
const char* const kKeyTokens = "tokenizer.ggml.tokens";
const char* const kKeyScores = "tokenizer.ggml.scores";
const char* const kKeyTypes = "tokenizer.ggml.token_type";
const char* const kKeyAddBos = "tokenizer.ggml.add_bos_token";
const char* const kKeyAddEos = "tokenizer.ggml.add_eos_token";
const char* const kKeyAddSpacePrefix = "tokenizer.ggml.add_space_prefix";
const char* const kKeyBos = "tokenizer.ggml.bos_token_id";
const char* const kKeyEos = "tokenizer.ggml.eos_token_id";

bool is_integer(GGUFType t) {
    switch (t) {
        case GGUFType::GGUF_TYPE_UINT8:
        case GGUFType::GGUF_TYPE_INT8:
        case GGUFType::GGUF_TYPE_UINT16:
        case GGUFType::GGUF_TYPE_INT16:
        case GGUFType::GGUF_TYPE_UINT32:
        case GGUFType::GGUF_TYPE_INT32:
        case GGUFType::GGUF_TYPE_UINT64:
        case GGUFType::GGUF_TYPE_INT64: return true;
        default: return false;
    }
}

bool is_signed(GGUFType t) {
    return t == GGUFType::GGUF_TYPE_INT8 || t == GGUFType::GGUF_TYPE_INT16 || t == GGUFType::GGUF_TYPE_INT32 ||
           t == GGUFType::GGUF_TYPE_INT64;
}

std::string key_error(const GGUFFile& f, const std::string& key, const std::string& msg) {
    return f.path() + ": key '" + key + "': " + msg;
}

// A token id key: -1 when absent or "none" (0xFFFFFFFF, or -1 in a signed type); an error when out of range.
int32_t read_token_id(const GGUFFile& f, const std::string& key, int32_t n_vocab) {
    const GGUFValue* v = f.find(key);
    if (!v) return -1;
    if (!is_integer(v->type))
        throw Error(key_error(f, key, std::string("expected a token id (UINT32), found ") + gguf_type_name(v->type)));
    if (is_signed(v->type) ? v->i == -1 : v->u == 0xFFFFFFFFu) return -1;
    const bool in_range = is_signed(v->type) ? (v->i >= 0 && v->i < n_vocab) : (v->u < uint64_t(n_vocab));
    if (!in_range) {
        const std::string value = is_signed(v->type) ? std::to_string(v->i) : std::to_string(v->u);
        throw Error(key_error(f, key, "token id " + value + " is out of range (expected 0.." +
                                          std::to_string(n_vocab - 1) + " or 0xFFFFFFFF for none, the vocabulary has " +
                                          std::to_string(n_vocab) + " tokens)"));
    }
    return int32_t(is_signed(v->type) ? v->i : int64_t(v->u));
}

void check_length(const GGUFFile& f, const std::string& key, size_t n, size_t n_tokens) {
    if (n != n_tokens)
        throw Error(key_error(f, key, "has " + std::to_string(n) + " elements, expected " + std::to_string(n_tokens) +
                                          " (one per entry of " + kKeyTokens + ")"));
}

// "<0xXX>" -> XX, -1 when `text` is not of that form.
int parse_byte_token(const std::string& text) {
    auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    if (text.size() != 6 || text.compare(0, 3, "<0x") != 0 || text[5] != '>') return -1;
    const int hi = hex(text[3]), lo = hex(text[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Texts by which llama.cpp recognises special tokens when the file names none (llama_vocab::impl::load).
const char* const kEotTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                 "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                                 "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
                                 "<end_of_utterance>"};
const char* const kEomTexts[] = {"<|eom_id|>"};
const char* const kFimPreTexts[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                    "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>",
                                    "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"};
const char* const kFimSufTexts[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                    "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>", "<SUF>",
                                    "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"};
const char* const kFimMidTexts[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                    "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>",
                                    "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"};
const char* const kFimPadTexts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"};
const char* const kFimRepTexts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"};
const char* const kFimSepTexts[] = {"<|file_sep|>"};
// Tokens that end generation wherever they are.
const char* const kEogTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
                                 "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                                 "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
                                 "<turn|>", "<|tool_response>",
                                 "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", "[e~["};
// gpt-oss (harmony) tokens that llama.cpp always renders: user-defined, not control.
const char* const kAlwaysRendered[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};

template <size_t N>
bool text_in(const std::string& text, const char* const (&list)[N]) {
    for (const char* t : list)
        if (text == t) return true;
    return false;
}

bool contains_any(const std::string& s, std::initializer_list<const char*> subs) {
    for (const char* sub : subs)
        if (s.find(sub) != std::string::npos) return true;
    return false;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GGUFFile& file) {
    const std::string model = file.get_string(kKeyModel);
    if (model == "llama") return create_spm(file);
    if (model == "gpt2") return create_bpe(file);
    throw Error(key_error(file, kKeyModel, "unsupported tokenizer model '" + model +
                                               "' (expected 'llama' for SentencePiece or 'gpt2' for byte-level BPE)"));
}

void Tokenizer::load_vocab(const GGUFFile& f, const VocabDefaults& defaults) {
    model_ = f.get_string(kKeyModel);
    pre_ = f.get_string(kKeyPre, "");
    add_space_prefix_ = f.get_bool(kKeyAddSpacePrefix, defaults.add_space_prefix);

    tokens_ = f.get_string_array(kKeyTokens);
    const size_t n = tokens_.size();
    if (n == 0) throw Error(key_error(f, kKeyTokens, "is empty (expected at least one token)"));
    if (n > size_t(std::numeric_limits<int32_t>::max()))
        throw Error(key_error(f, kKeyTokens, "has " + std::to_string(n) + " tokens, more than int32 ids can name"));
    const int32_t n_vocab = int32_t(n);

    scores_.assign(n, 0.0f);
    if (const GGUFValue* v = f.find(kKeyScores)) {
        if (v->type == GGUFType::GGUF_TYPE_ARRAY && is_integer(v->elem_type)) {
            const std::vector<int32_t> s = f.get_i32_array(kKeyScores);  // llama.cpp accepts INT32 scores
            check_length(f, kKeyScores, s.size(), n);
            for (size_t i = 0; i < n; i++) scores_[i] = float(s[i]);
        } else {
            scores_ = f.get_f32_array(kKeyScores);
            check_length(f, kKeyScores, scores_.size(), n);
        }
    }

    types_.assign(n, TokenType::TOKEN_TYPE_NORMAL);
    if (f.has(kKeyTypes)) {
        const std::vector<int32_t> t = f.get_i32_array(kKeyTypes);
        check_length(f, kKeyTypes, t.size(), n);
        for (size_t i = 0; i < n; i++) {
            if (t[i] < 0 || t[i] > int32_t(TokenType::TOKEN_TYPE_BYTE))
                throw Error(key_error(f, kKeyTypes, "element " + std::to_string(i) + " ('" + tokens_[i] + "') is " +
                                                        std::to_string(t[i]) + ", expected a token type 0..6"));
            types_[i] = TokenType(t[i]);
        }
    }

    // Empty texts would match everywhere in the partition; llama.cpp renames them the same way.
    for (size_t i = 0; i < n; i++)
        if (tokens_[i].empty()) tokens_[i] = "[EMPTY_" + std::to_string(i) + "]";
    token_to_id_.clear();
    token_to_id_.reserve(n);
    for (size_t i = 0; i < n; i++) {
        auto ins = token_to_id_.emplace(std::string_view(tokens_[i]), int32_t(i));
        if (!ins.second)
            throw Error(key_error(f, kKeyTokens, "duplicate token '" + tokens_[i] + "' at ids " +
                                                     std::to_string(ins.first->second) + " and " + std::to_string(i)));
    }

    // Absent ids mean "none" (llama.cpp would assume 1/2/0 for SentencePiece and 11 for BPE).
    bos_ = read_token_id(f, kKeyBos, n_vocab);
    eos_ = read_token_id(f, kKeyEos, n_vocab);
    unk_ = read_token_id(f, "tokenizer.ggml.unknown_token_id", n_vocab);
    eot_ = read_token_id(f, "tokenizer.ggml.eot_token_id", n_vocab);
    eom_ = read_token_id(f, "tokenizer.ggml.eom_token_id", n_vocab);
    pad_ = read_token_id(f, "tokenizer.ggml.padding_token_id", n_vocab);
    read_token_id(f, "tokenizer.ggml.seperator_token_id", n_vocab);  // validated only (llama.cpp's spelling)
    int32_t fim_pre = read_token_id(f, "tokenizer.ggml.fim_pre_token_id", n_vocab);
    int32_t fim_suf = read_token_id(f, "tokenizer.ggml.fim_suf_token_id", n_vocab);
    int32_t fim_mid = read_token_id(f, "tokenizer.ggml.fim_mid_token_id", n_vocab);
    int32_t fim_pad = read_token_id(f, "tokenizer.ggml.fim_pad_token_id", n_vocab);
    int32_t fim_rep = read_token_id(f, "tokenizer.ggml.fim_rep_token_id", n_vocab);
    int32_t fim_sep = read_token_id(f, "tokenizer.ggml.fim_sep_token_id", n_vocab);
    if (fim_pre < 0) fim_pre = read_token_id(f, "tokenizer.ggml.prefix_token_id", n_vocab);  // deprecated keys
    if (fim_suf < 0) fim_suf = read_token_id(f, "tokenizer.ggml.suffix_token_id", n_vocab);
    if (fim_mid < 0) fim_mid = read_token_id(f, "tokenizer.ggml.middle_token_id", n_vocab);

    add_bos_ = f.get_bool(kKeyAddBos, defaults.add_bos);
    add_eos_ = f.get_bool(kKeyAddEos, false);
    if (add_bos_ && bos_ < 0) {
        if (f.has(kKeyAddBos))
            throw Error(key_error(f, kKeyAddBos, std::string("is true but ") + kKeyBos + " names no token"));
        add_bos_ = false;  // the model's default cannot apply without a BOS
    }
    if (add_eos_ && eos_ < 0)
        throw Error(key_error(f, kKeyAddEos, std::string("is true but ") + kKeyEos + " names no token"));

    // Special tokens the file does not name are recognised by their text; such a token that is not typed control
    // becomes control, as in llama.cpp. Scanning in id order makes the choice deterministic where llama.cpp's
    // (an unordered_map walk) is not.
    auto make_control = [&](size_t id) { types_[id] = TokenType::TOKEN_TYPE_CONTROL; };
    for (size_t i = 0; i < n; i++) {
        const std::string& t = tokens_[i];
        struct {
            int32_t* id;
            bool match;
        } detect[] = {
            {&eot_, text_in(t, kEotTexts)},         {&eom_, text_in(t, kEomTexts)},
            {&fim_pre, text_in(t, kFimPreTexts)},   {&fim_suf, text_in(t, kFimSufTexts)},
            {&fim_mid, text_in(t, kFimMidTexts)},   {&fim_pad, text_in(t, kFimPadTexts)},
            {&fim_rep, text_in(t, kFimRepTexts)},   {&fim_sep, text_in(t, kFimSepTexts)},
        };
        for (auto& d : detect) {
            if (*d.id < 0 && d.match) {
                *d.id = int32_t(i);
                make_control(i);
            }
        }
    }

    std::vector<int32_t> eog;
    for (int32_t id : {fim_pad, fim_rep, fim_sep})
        if (id >= 0) eog.push_back(id);
    for (size_t i = 0; i < n; i++) {
        if (text_in(tokens_[i], kAlwaysRendered)) types_[i] = TokenType::TOKEN_TYPE_USER_DEFINED;
        if (text_in(tokens_[i], kEogTexts)) {
            eog.push_back(int32_t(i));
            make_control(i);
        }
    }
    for (int32_t id : {eos_, eot_, eom_})
        if (id >= 0) eog.push_back(id);
    std::sort(eog.begin(), eog.end());
    eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
    auto eog_has = [&](const char* text) {
        for (int32_t id : eog)
            if (tokens_[id] == text) return id;
        return -1;
    };
    // gpt-oss and solar-open: "<|end|>" ends a message, not the generation, when <|return|>/<|call|> exist.
    const int32_t end_id = eog_has("<|end|>");
    const bool has_call = eog_has("<|call|>") >= 0 || eog_has("<|calls|>") >= 0;
    if (end_id >= 0 && has_call && (eog_has("<|return|>") >= 0 || eog_has("<|flush|>") >= 0)) {
        eog.erase(std::find(eog.begin(), eog.end(), end_id));
        types_[end_id] = TokenType::TOKEN_TYPE_USER_DEFINED;
    }
    // Gemma 4 and PaddleOCR: "</s>" is an ordinary token when "<|tool_response>" exists.
    const int32_t s_id = eog_has("</s>");
    if (s_id >= 0 && eog_has("<|tool_response>") >= 0) {
        eog.erase(std::find(eog.begin(), eog.end(), s_id));
        types_[s_id] = TokenType::TOKEN_TYPE_NORMAL;
    }
    eog_ids_ = eog;

    // Partition candidates, longest text first (a stable sort, so equal lengths keep id order).
    special_ids_.clear();
    for (size_t i = 0; i < n; i++) {
        const TokenType t = types_[i];
        if (t == TokenType::TOKEN_TYPE_CONTROL || t == TokenType::TOKEN_TYPE_USER_DEFINED ||
            t == TokenType::TOKEN_TYPE_UNKNOWN)
            special_ids_.push_back(int32_t(i));
    }
    std::stable_sort(special_ids_.begin(), special_ids_.end(),
                     [&](int32_t a, int32_t b) { return tokens_[a].size() > tokens_[b].size(); });

    // Per-model whitespace stripping around special tokens (llama.cpp sets these by model and pre-tokenizer name).
    strip_.assign(n, 0);
    std::string name = f.get_string("general.name", "");
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    const std::string arch = f.get_string("general.architecture", "");
    auto set_strip = [&](const char* text, uint8_t bit, bool on) {
        const int32_t id = find_token(text);
        if (id >= 0) strip_[id] = on ? uint8_t(strip_[id] | bit) : uint8_t(strip_[id] & ~bit);
    };
    if (contains_any(pre_, {"jina-v2-de", "jina-v2-es", "jina-v2-code"}) ||
        contains_any(arch, {"nomic-bert-moe", "jina-bert-v3"})) {
        set_strip("<mask>", 1, true);
    } else if (contains_any(name, {"phi-3", "phi3"})) {
        for (int32_t id : special_ids_) strip_[id] |= 2;
        set_strip("</s>", 2, true);
        for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) set_strip(t, 2, false);
    } else if (contains_any(name, {"modern-bert"})) {
        set_strip("[MASK]", 1, true);
    }
}

std::vector<Tokenizer::Fragment> Tokenizer::partition(const std::string& text, bool parse_special) const {
    std::vector<Fragment> frags;
    if (text.empty()) return frags;
    frags.push_back({-1, 0, text.size()});
    auto is_space = [&](size_t i) { return std::isspace(static_cast<unsigned char>(text[i])) != 0; };
    for (int32_t id : special_ids_) {
        const TokenType type = types_[id];
        if (!parse_special && (type == TokenType::TOKEN_TYPE_CONTROL || type == TokenType::TOKEN_TYPE_UNKNOWN))
            continue;  // user-defined tokens are split out even without parse_special
        const std::string& tok = tokens_[id];
        if (text.find(tok) == std::string::npos) continue;
        std::vector<Fragment> next;
        next.reserve(frags.size() + 2);
        for (const Fragment& fr : frags) {
            if (fr.token >= 0) {
                next.push_back(fr);
                continue;
            }
            const std::string_view within(text.data(), fr.offset + fr.length);
            size_t pos = fr.offset;
            const size_t end = fr.offset + fr.length;
            while (true) {
                const size_t match = within.find(tok, pos);
                if (match == std::string_view::npos) {
                    if (end > pos) next.push_back({-1, pos, end - pos});
                    break;
                }
                size_t left_len = match - pos;
                if (strip_[id] & 1)
                    while (left_len > 0 && is_space(pos + left_len - 1)) left_len--;
                if (left_len > 0) next.push_back({-1, pos, left_len});
                next.push_back({id, 0, 0});
                pos = match + tok.size();
                if (strip_[id] & 2)
                    while (pos < end && is_space(pos)) pos++;
            }
        }
        frags.swap(next);
    }
    return frags;
}

void Tokenizer::load_pieces(const GGUFFile& f, const std::function<std::string(const std::string&)>& normal_piece) {
    pieces_.resize(tokens_.size());
    for (size_t i = 0; i < tokens_.size(); i++) {
        const std::string& t = tokens_[i];
        switch (types_[i]) {
            case TokenType::TOKEN_TYPE_CONTROL:
            case TokenType::TOKEN_TYPE_UNKNOWN:
            case TokenType::TOKEN_TYPE_USER_DEFINED: pieces_[i] = t; break;
            case TokenType::TOKEN_TYPE_NORMAL: pieces_[i] = normal_piece(t); break;
            case TokenType::TOKEN_TYPE_BYTE: {
                const int b = parse_byte_token(t);
                if (b < 0)
                    throw Error(key_error(f, kKeyTokens,
                                          "token " + std::to_string(i) + " '" + t + "' has type BYTE in " + kKeyTypes +
                                              " but is not of the form <0xXX>"));
                pieces_[i] = std::string(1, char(b));
                break;
            }
            default: break;  // unused and undefined tokens print nothing, as in llama.cpp
        }
    }
}

bool Tokenizer::is_eog(int32_t id) const {
    return id >= 0 && std::binary_search(eog_ids_.begin(), eog_ids_.end(), id);
}

int32_t Tokenizer::token_id(const std::string& text) const { return find_token(text); }

void Tokenizer::check_id(int32_t id) const {
    if (id < 0 || id >= n_vocab())
        throw Error("tokenizer (" + model_ + "): token id " + std::to_string(id) + " is out of range (vocabulary has " +
                    std::to_string(n_vocab()) + " tokens)");
}

std::string Tokenizer::piece(int32_t id, bool render_special) const {
    check_id(id);
    const TokenType t = types_[id];
    if (!render_special && (t == TokenType::TOKEN_TYPE_CONTROL || t == TokenType::TOKEN_TYPE_UNKNOWN)) return {};
    return pieces_[id];
}

std::string Tokenizer::detokenize(const std::vector<int32_t>& ids, bool render_special) const {
    std::string out;
    bool remove_space = add_space_prefix_;
    for (size_t i = 0; i < ids.size(); i++) {
        std::string p = piece(ids[i], render_special);
        if (i == 0 && ids[i] == bos_) {  // the space to drop is the one the encoder put after BOS
            out += p;
            continue;
        }
        if (remove_space && !p.empty() && p[0] == ' ') p.erase(0, 1);
        remove_space = false;
        out += p;
    }
    return clean_spaces_ ? clean_up_spaces(out) : out;
}

std::string Tokenizer::clean_up_spaces(const std::string& text) {
    if (text.empty()) return text;
    // 1: no space before ? ! . ,
    std::string a(1, text[0]);
    for (size_t i = 1; i < text.size(); i++) {
        const char x = text[i];
        if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) a.pop_back();
        a += x;
    }
    // 2: " ' " becomes "'" (the space after it is dropped and cannot start another match)
    std::string b(1, a[0]);
    for (size_t i = 1; i < a.size(); i++) {
        const char x = a[i];
        if (x == '\'' && i + 1 < a.size() && a[i - 1] == ' ' && a[i + 1] == ' ') {
            b.pop_back();
            a[++i] = '\0';
        }
        b += x;
    }
    // 3: contractions " 's" " 'm" " 're" " 've" lose their space (" 't", " 'd", " 'll" keep it)
    std::string c(1, b[0]);
    for (size_t i = 1; i < b.size(); i++) {
        const char x = b[i];
        if (b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
            const char x1 = b[i + 1];
            if (x1 == 's' || x1 == 'm') {
                c.pop_back();
            } else if (x1 != 't' && x1 != 'd' && i + 2 < b.size()) {
                const char x2 = b[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) c.pop_back();
            }
        }
        c += x;
    }
    return c;
}

}  // namespace ember
