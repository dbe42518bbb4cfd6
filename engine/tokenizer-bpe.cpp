// Byte-level BPE tokenizer (tokenizer.ggml.model = "gpt2"), llama.cpp's llm_tokenizer_bpe: the pre-tokenizer named
// by tokenizer.ggml.pre splits the text into words, each word's bytes are mapped to printable characters by GPT-2's
// bytes_to_unicode table, and within a word the adjacent pair with the lowest merge rank (tokenizer.ggml.merges
// order) is merged until no pair has a rank (ties go to the leftmost pair).
#include <array>
#include <cstdio>
#include <queue>
#include <unordered_map>

#include "engine/error.h"
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

        const ByteMap& bm = byte_map();
        pieces_.resize(tokens_.size());
        for (size_t i = 0; i < tokens_.size(); i++) {
            const std::string& t = tokens_[i];
            switch (types_[i]) {
                case TokenType::TOKEN_TYPE_CONTROL:
                case TokenType::TOKEN_TYPE_UNKNOWN:
                case TokenType::TOKEN_TYPE_USER_DEFINED: pieces_[i] = t; break;
                case TokenType::TOKEN_TYPE_NORMAL: {
                    // Back from mapped characters to bytes; a character outside the table is shown as
                    // llama.cpp shows it.
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
                    pieces_[i] = p;
                    break;
                }
                case TokenType::TOKEN_TYPE_BYTE: {
                    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>')
                        throw Error(f.path() + ": key 'tokenizer.ggml.tokens': token " + std::to_string(i) + " '" +
                                    t + "' has type BYTE in tokenizer.ggml.token_type but is not of the form <0xXX>");
                    pieces_[i] = std::string(1, char(std::stoi(t.substr(3, 2), nullptr, 16)));
                    break;
                }
                default: break;
            }
        }
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
    struct Symbol {
        size_t start, n;  // bytes of the word; n = 0 once merged into its left neighbour
        int prev, next;
    };
    struct Bigram {
        int rank;
        int left, right;
        size_t size;
    };
    struct BigramOrder {  // lowest rank on top, then leftmost
        bool operator()(const Bigram& a, const Bigram& b) const {
            return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
        }
    };

    int rank(const std::string& word, const Symbol& l, const Symbol& r) const {
        auto it = ranks_.find(std::make_pair(word.substr(l.start, l.n), word.substr(r.start, r.n)));
        return it == ranks_.end() ? -1 : it->second;
    }

    void merge_word(const std::string& word, std::vector<int32_t>& out) const {
        if (word.empty()) return;
        if (ignore_merges_) {
            const int32_t id = find_token(word);
            if (id >= 0) {
                out.push_back(id);
                return;
            }
        }
        std::vector<Symbol> sym;
        for (size_t off = 0; off < word.size();) {
            const size_t n = std::min(utf8_len(word[off]), word.size() - off);
            const int idx = int(sym.size());
            sym.push_back({off, n, idx - 1, off + n == word.size() ? -1 : idx + 1});
            off += n;
        }
        std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
        auto try_add = [&](int left, int right) {
            if (left < 0 || right < 0) return;
            const int r = rank(word, sym[left], sym[right]);
            if (r >= 0) queue.push({r, left, right, sym[left].n + sym[right].n});
        };
        for (int i = 1; i < int(sym.size()); i++) try_add(i - 1, i);
        while (!queue.empty()) {
            const Bigram bg = queue.top();
            queue.pop();
            Symbol& l = sym[bg.left];
            Symbol& r = sym[bg.right];
            if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;  // one side already merged elsewhere
            l.n += r.n;
            r.n = 0;
            l.next = r.next;
            if (r.next >= 0) sym[r.next].prev = bg.left;
            try_add(l.prev, bg.left);
            try_add(bg.left, l.next);
        }
        for (int i = 0; i != -1; i = sym[i].next) {
            const std::string_view piece(word.data() + sym[i].start, sym[i].n);
            const int32_t id = find_token(piece);
            if (id >= 0) {
                out.push_back(id);
                continue;
            }
            // A piece that is not a token: its single bytes, where those are tokens (llama.cpp drops the rest).
            for (char c : piece) {
                const int32_t b = find_token(std::string_view(&c, 1));
                if (b >= 0) out.push_back(b);
            }
        }
    }

    std::unique_ptr<PreTokenizer> pre_tok_;
    bool ignore_merges_ = false;
    std::unordered_map<std::pair<std::string, std::string>, int, PairHash> ranks_;
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::create_bpe(const GGUFFile& file) { return std::make_unique<BpeTokenizer>(file); }

}  // namespace ember
