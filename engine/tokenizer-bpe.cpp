// Byte-level BPE tokenizer (tokenizer.ggml.model = "gpt2"), llama.cpp's llm_tokenizer_bpe: the pre-tokenizer named
// by tokenizer.ggml.pre splits the text into words, each word's bytes are mapped to printable characters by GPT-2's
// bytes_to_unicode table, and within a word the adjacent pair with the lowest merge rank (tokenizer.ggml.merges
// order) is merged until no pair has a rank (ties go to the leftmost pair).
#include <array>
#include <cstdio>
#include <optional>
#include <unordered_map>

#include "engine/error.h"
#include "engine/tokenizer-merge.h"
#include "engine/tokenizer-pre.h"
#include "engine/tokenizer.h"
#include "engine/utf8.h"

namespace ember {

namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes take the code points
// 256, 257, ... in byte order.
struct ByteMap {
    std::array<std::string, 256> encode;  // byte -> UTF-8 of its code point
    std::array<int, 324> decode;          // code point -> byte, -1 when the code point is not in the table
    ByteMap() {
        decode.fill(-1);
        int extra = 0;
        for (int b = 0; b < 256; b++) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            const uint32_t cpt = printable ? uint32_t(b) : uint32_t(256 + extra++);
            utf8_append(encode[b], cpt);
            decode[cpt] = b;
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap map;
    return map;
}

struct PairHash {
    size_t operator()(const std::pair<std::string, std::string>& p) const {
        return std::hash<std::string>()(p.first) * 31 + std::hash<std::string>()(p.second);
    }
};

class BpeTokenizer final : public Tokenizer {
public:
    explicit BpeTokenizer(const GGUFFile& f) {
        try {
            pre_tok_ = PreTokenizer::create(f.get_string("tokenizer.ggml.pre", ""));
        } catch (const Error& e) {
            throw Error(f.path() + ": " + e.what());
        }
        VocabDefaults defaults;
        defaults.add_bos = pre_tok_->flags().add_bos;
        defaults.add_space_prefix = false;
        load_vocab(f, defaults);
        clean_spaces_ = pre_tok_->flags().clean_spaces;
        ignore_merges_ = pre_tok_->flags().ignore_merges;

        const std::vector<std::string> merges = f.get_string_array("tokenizer.ggml.merges");
        ranks_.reserve(merges.size());
        for (size_t i = 0; i < merges.size(); i++) {
            const std::string& m = merges[i];
            const size_t sp = m.find(' ', 1);
            if (sp == std::string::npos || sp + 1 >= m.size())
                throw Error(f.path() + ": key 'tokenizer.ggml.merges': element " + std::to_string(i) + " '" + m +
                            "' is not two tokens separated by a space");
            ranks_.emplace(std::make_pair(m.substr(0, sp), m.substr(sp + 1)), int(i));  // first occurrence wins
        }

        // Back from mapped characters to bytes; a character outside the table is shown as llama.cpp shows it.
        const ByteMap& bm = byte_map();
        load_pieces(f, [&bm](const std::string& t) {
            std::string p;
            for (size_t k = 0; k < t.size();) {
                const uint32_t cpt = utf8_next(t, &k);
                if (cpt < bm.decode.size() && bm.decode[cpt] >= 0) {
                    p += char(bm.decode[cpt]);
                } else {
                    std::string utf8;
                    utf8_append(utf8, cpt);
                    p += "[UNK_BYTE_0x";
                    for (char c : utf8) {
                        char hex[3];
                        std::snprintf(hex, sizeof(hex), "%02x", unsigned(uint8_t(c)));
                        p += hex;
                    }
                    p += t + "]";
                }
            }
            return p;
        });
    }

    std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special) const override {
        std::vector<int32_t> out;
        if (add_bos) {
            if (bos_ < 0)
                throw Error("tokenizer (gpt2): BOS requested but tokenizer.ggml.bos_token_id names no token");
            out.push_back(bos_);
        }
        const ByteMap& bm = byte_map();
        std::string word;
        for (const Fragment& fr : partition(text, parse_special)) {
            if (fr.token >= 0) {
                out.push_back(fr.token);
                continue;
            }
            // Invalid UTF-8 becomes U+FFFD first, as llama.cpp's code-point split does.
            const std::string raw = utf8_sanitize(text.substr(fr.offset, fr.length));
            for (const auto& w : pre_tok_->split(raw)) {
                word.clear();
                for (size_t k = w.first; k < w.first + w.second; k++) word += bm.encode[uint8_t(raw[k])];
                merge_word(word, out);
            }
        }
        return out;
    }

    std::string token_to_piece(int32_t id, bool render_special) const override { return piece(id, render_special); }

    std::string decode(const std::vector<int32_t>& ids, bool render_special) const override {
        return detokenize(ids, render_special);
    }

private:
    // llama.cpp's llm_tokenizer_bpe_session::tokenize on one word: a pair merges when tokenizer.ggml.merges lists
    // it, the lowest rank first.
    void merge_word(const std::string& word, std::vector<int32_t>& out) const {
        if (word.empty()) return;
        if (ignore_merges_) {
            const int32_t id = find_token(word);
            if (id >= 0) {
                out.push_back(id);
                return;
            }
        }
        auto priority = [this](std::string_view l, std::string_view r) -> std::optional<int> {
            auto it = ranks_.find(std::make_pair(std::string(l), std::string(r)));
            if (it == ranks_.end()) return std::nullopt;
            return -it->second;  // the lowest rank merges first
        };
        auto emit = [this, &out](std::string_view piece) {
            const int32_t id = find_token(piece);
            if (id >= 0) {
                out.push_back(id);
                return;
            }
            // A piece that is not a token: its single bytes, where those are tokens (llama.cpp drops the rest).
            for (char c : piece) {
                const int32_t b = find_token(std::string_view(&c, 1));
                if (b >= 0) out.push_back(b);
            }
        };
        tokenizer_merge(word, priority, emit);
    }

    std::unique_ptr<PreTokenizer> pre_tok_;
    bool ignore_merges_ = false;
    std::unordered_map<std::pair<std::string, std::string>, int, PairHash> ranks_;
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::create_bpe(const GGUFFile& file) { return std::make_unique<BpeTokenizer>(file); }

}  // namespace ember
