// Tokenizers read from GGUF metadata (tokenizer.ggml.*): SentencePiece-style ("llama") and byte-level BPE
// ("gpt2", with the pre-tokenizer named by tokenizer.ggml.pre). Behaviour follows llama.cpp's llama-vocab.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/gguf.h"

namespace ember {

enum class TokenType : int32_t {  // tokenizer.ggml.token_type values
    TOKEN_TYPE_UNDEFINED = 0,
    TOKEN_TYPE_NORMAL = 1,
    TOKEN_TYPE_UNKNOWN = 2,
    TOKEN_TYPE_CONTROL = 3,
    TOKEN_TYPE_USER_DEFINED = 4,
    TOKEN_TYPE_UNUSED = 5,
    TOKEN_TYPE_BYTE = 6,
};

class Tokenizer {
public:
    // Reads the vocabulary from a GGUF file's metadata; throws ember::Error naming the file and key on bad input.
    static std::unique_ptr<Tokenizer> from_gguf(const GGUFFile& file);
    virtual ~Tokenizer() = default;
    Tokenizer(const Tokenizer&) = delete;  // token_to_id_ points into tokens_
    Tokenizer& operator=(const Tokenizer&) = delete;

    // Text to token ids. add_bos: prepend BOS (callers pass add_bos_default() unless told otherwise; throws
    // ember::Error when the vocabulary has no BOS). EOS is never appended (see add_eos_default()).
    // parse_special: text matching control/user-defined tokens becomes those tokens. User-defined tokens are
    // matched even without it, as in llama.cpp.
    virtual std::vector<int32_t> encode(const std::string& text, bool add_bos, bool parse_special) const = 0;
    // The text of one token as it appears in output (byte tokens give their byte, "▁" gives a space).
    // Control tokens give "" unless render_special. Throws ember::Error for an id outside [0, n_vocab).
    virtual std::string token_to_piece(int32_t id, bool render_special = false) const = 0;
    // Concatenated pieces; like llama.cpp, drops the leading space the SentencePiece encoder adds after BOS
    // (the first piece after an optional leading BOS loses one leading space when add_space_prefix), and for
    // BPE vocabularies with clean_spaces applies llama.cpp's clean-up (" ," -> ",", " 's" -> "'s", ...).
    virtual std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const = 0;

    int32_t n_vocab() const { return (int32_t)tokens_.size(); }
    const std::string& token_text(int32_t id) const { return tokens_.at(id); }
    TokenType token_type(int32_t id) const { return types_.at(id); }
    int32_t bos() const { return bos_; }  // -1 when the vocabulary has none
    int32_t eos() const { return eos_; }
    int32_t eot() const { return eot_; }  // end of turn (chat models), -1 when none
    int32_t eom() const { return eom_; }  // end of message (<|eom_id|>), -1 when none
    int32_t unk() const { return unk_; }
    int32_t pad() const { return pad_; }
    bool add_bos_default() const { return add_bos_; }
    bool add_eos_default() const { return add_eos_; }  // tokenizer.ggml.add_eos_token; encode leaves EOS to callers
    bool add_space_prefix() const { return add_space_prefix_; }
    // End of generation: EOS, EOT, EOM and the tokens llama.cpp recognises by text (<|im_end|>, <end_of_turn>, ...).
    bool is_eog(int32_t id) const;
    const std::vector<int32_t>& eog_ids() const { return eog_ids_; }  // sorted
    int32_t token_id(const std::string& text) const;  // the token whose text is exactly `text`, -1 when none
    const std::string& model_name() const { return model_; }  // tokenizer.ggml.model
    const std::string& pre_name() const { return pre_; }      // tokenizer.ggml.pre ("" when absent)

protected:
    // What a tokenizer model sets before the file's keys are read (llama.cpp's per-model defaults).
    struct VocabDefaults {
        bool add_bos = false;
        bool add_space_prefix = false;
    };
    // A piece of the input after the special-token partition: a token, or raw text [offset, offset + length).
    struct Fragment {
        int32_t token;  // -1 for raw text
        size_t offset, length;
    };

    Tokenizer() = default;
    // Reads tokens, scores, types, special ids and flags shared by all models; see tokenizer.cpp.
    void load_vocab(const GGUFFile& file, const VocabDefaults& defaults);
    // Fills pieces_ after load_vocab: control, unknown and user-defined tokens are their text, BYTE tokens (<0xXX>)
    // their byte, NORMAL tokens normal_piece(text) (each model undoes its own escaping), other types nothing.
    void load_pieces(const GGUFFile& file, const std::function<std::string(const std::string&)>& normal_piece);
    // llama.cpp's tokenizer_st_partition: special tokens found in `text`, longest first.
    std::vector<Fragment> partition(const std::string& text, bool parse_special) const;
    // The id of `text`, -1 when none (every token type counts, as in llama.cpp's token_to_id).
    int32_t find_token(std::string_view text) const {
        auto it = token_to_id_.find(text);
        return it == token_to_id_.end() ? -1 : it->second;
    }
    void check_id(int32_t id) const;  // throws ember::Error when id is outside the vocabulary
    // token_to_piece and decode over pieces_ (llama.cpp's token_to_piece and detokenize).
    std::string piece(int32_t id, bool render_special) const;
    std::string detokenize(const std::vector<int32_t>& ids, bool render_special) const;
    // Applies llama.cpp's clean_spaces passes to decoded text.
    static std::string clean_up_spaces(const std::string& text);

    static std::unique_ptr<Tokenizer> create_spm(const GGUFFile& file);  // tokenizer-spm.cpp
    static std::unique_ptr<Tokenizer> create_bpe(const GGUFFile& file);  // tokenizer-bpe.cpp

    std::vector<std::string> tokens_;
    std::vector<float> scores_;
    std::vector<TokenType> types_;
    int32_t bos_ = -1, eos_ = -1, eot_ = -1, unk_ = -1;
    int32_t eom_ = -1, pad_ = -1;
    bool add_bos_ = true;
    bool add_eos_ = false;
    bool add_space_prefix_ = false;
    bool clean_spaces_ = false;
    std::string model_, pre_;
    std::unordered_map<std::string_view, int32_t> token_to_id_;  // views into tokens_
    std::vector<int32_t> special_ids_;  // control, user-defined and unknown tokens, longest text first
    std::vector<uint8_t> strip_;        // per token: 1 = lstrip, 2 = rstrip whitespace around it in partition
    std::vector<int32_t> eog_ids_;
    std::vector<std::string> pieces_;  // per token: its output text with special tokens rendered
};

}  // namespace ember
