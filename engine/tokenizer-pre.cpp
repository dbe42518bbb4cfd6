#include "engine/tokenizer-pre.h"

#ifdef EMBER_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

#include <cstring>

#include "engine/error.h"
#include "engine/utf8.h"

namespace ember {

namespace {

// The regex lists, as llama.cpp's llm_tokenizer_bpe has them. llama.cpp runs them through its own splitter
// (hand-written for the GPT-2 and Llama-3 patterns, std::regex on a text whose non-ASCII code points are collapsed
// to one byte per Unicode category otherwise); PCRE2 runs the same patterns over real Unicode properties.
// Non-ASCII characters are written as \x{...}: several (U+2126, U+212A, U+1FBE, ...) have canonical equivalents
// that an editor's normalisation would silently swap, which would change the ranges.
const char* const kGpt2 = R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))re";

const char* const kLlama3 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

const char* const kJais2 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1})re";

const char* const kQwen2 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

const char* const kQwen35 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// Cased letters (Unicode L&) of DeepSeek-LLM's tokenizer.json.
const char* const kDeepseekLlmLetters =
    R"re(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)re";

const char* const kDeepseekPunct = R"re(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)re";
const char* const kCjkHangul = R"re([\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+)re";
const char* const kCjkKana = R"re([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)re";

// DeepSeek-V3 and Spark: llama.cpp's \p{S} lacks '~' (its ASCII symbol list is $+<=>^`|), so '~' counts as
// neither punctuation nor symbol there; the patterns below say so explicitly to give llama.cpp's pieces.
const char* const kDeepseek3Main =
    R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|(?:[^\r\n\p{L}\p{P}\p{S}]|~)?[\p{L}\p{M}]+| ?(?:(?!~)[\p{P}\p{S}])+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
const char* const kSparkMain =
    R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|(?:[^\r\n\p{L}\p{P}\p{S}]|~)?[\p{L}\p{M}]+| ?(?:(?!~)[\p{P}\p{S}])+|[\r\n]|\s+(?!\S)|\s+)re";

const char* const kYoutuCjk =
    R"re([\x{AC00}-\x{D7A3}\x{3131}-\x{318E}]+|[\x{FF01}\x{2026}\x{201C}\x{201D}\x{2018}\x{2019}\x{2014}\x{FF1A}\x{FF1B}\x{FF0C}\x{3001}-\x{303F}\x{FE30}-\x{FE4F}]+|[\x{3105}-\x{312F}]+|[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)re";
const char* const kYoutuMain =
    R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

const char* const kPoro = R"re( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{0964}\x{06D4}\x{060C})]+)re";

const char* const kTekken =
    R"re([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

const char* const kGpt4o =
    R"re([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

const char* const kGraniteEmbMulti =
    R"re([^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// tokenizer.json's "\d{1,3}(?=(?:\d{3})*\b)"; llama.cpp runs it with std::wregex, where \d and \b are ASCII.
const char* const kTinyAyaDigits = R"re([0-9]{1,3}(?=(?:[0-9]{3})*(?![0-9A-Za-z_])))re";
const char* const kTinyAyaMain =
    R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

const char* const kBailingMoe =
    R"re('(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)re";

const char* const kSeedCoder =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+)re";

const char* const kUfakzeka = R"re([^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

const char* const kExaoneMoe =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+)re";

const char* const kMiniCpm5 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

using Regexes = std::vector<const char*>;

const Regexes kSetDefault = {R"re([\p{P}\$\+<=>\^~\|]+)re", kGpt2, R"re(\p{N}+)re", R"re([0-9][0-9][0-9])re"};
const Regexes kSetGpt2 = {kGpt2};
const Regexes kSetLlama3 = {kLlama3};
const Regexes kSetJais2 = {kJais2};
const Regexes kSetDeepseekLlm = {R"re([\r\n])re", kDeepseekLlmLetters, kDeepseekPunct, R"re(\s+$)re", kCjkHangul,
                                 R"re(\p{N}+)re"};
const Regexes kSetDeepseek3 = {R"re(\p{N}{1,3})re", kCjkKana, kDeepseek3Main};
const Regexes kSetSpark = {R"re(\p{N}{1,3})re", kCjkKana, kSparkMain, R"re(\p{N})re"};
const Regexes kSetYoutu = {kYoutuCjk, kYoutuMain};
const Regexes kSetDeepseekCoder = {R"re([\r\n])re", R"re(\s?\p{L}+)re", R"re(\s?\p{P}+)re", kCjkHangul,
                                   R"re(\p{N})re"};
const Regexes kSetFalcon = {R"re([\p{P}\$\+<=>\^~\|`]+)re", kGpt2, R"re([0-9][0-9][0-9])re"};
const Regexes kSetStarcoder = {R"re(\p{N})re", kGpt2};
const Regexes kSetQwen2 = {kQwen2};
const Regexes kSetQwen35 = {kQwen35};
const Regexes kSetPoro = {kPoro};
const Regexes kSetViking = {kPoro, R"re(\p{N})re"};
const Regexes kSetTekken = {kTekken};
const Regexes kSetChameleon = {R"re(<sentinel:[0-9]+>)re", R"re((IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z)re",
                               R"re(([\t\n]|    |  ))re", R"re(\p{N})re", R"re([\p{P}!-/:-@\[-`{-~])re", kGpt2};
const Regexes kSetGpt4o = {kGpt4o};
const Regexes kSetGraniteEmbMulti = {kGraniteEmbMulti};
const Regexes kSetTinyAya = {kTinyAyaDigits, kTinyAyaMain};
// tokenizer.json's "(?=(\d{3})+(?!\d))", ASCII digits as in llama.cpp's std::wregex: a zero-width split point.
const Regexes kSetSuperBpe = {R"re(\p{N}+)re", R"re((?=([0-9]{3})+(?![0-9])))re"};
const Regexes kSetBailingMoe = {kBailingMoe};
const Regexes kSetSeedCoder = {kSeedCoder};
const Regexes kSetUfakzeka = {kUfakzeka};
const Regexes kSetLaguna = {R"re([^\n]+|[\n]+)re", kQwen2};
const Regexes kSetExaoneMoe = {kExaoneMoe};
const Regexes kSetMiniCpm5 = {R"re(\p{N}{1,3})re", kMiniCpm5};

struct Entry {
    const char* name;
    const Regexes* regexes;
    bool clean_spaces;
    bool ignore_merges;
    bool add_bos;
};

// One row per tokenizer.ggml.pre value llama.cpp accepts for a byte-level BPE vocabulary (llama_vocab::impl::load).
// clean_spaces is llama.cpp's default (true) unless it turns it off for that name.
const Entry kEntries[] = {
    {"default", &kSetDefault, true, false, false},
    {"llama3", &kSetLlama3, true, true, true},
    {"llama-v3", &kSetLlama3, true, true, true},
    {"llama-bpe", &kSetLlama3, true, true, true},
    {"falcon3", &kSetLlama3, true, true, true},
    {"falcon-h1", &kSetLlama3, true, true, true},
    {"pixtral", &kSetLlama3, true, true, true},
    {"midm-2.0", &kSetLlama3, true, true, true},
    {"lfm2", &kSetLlama3, true, true, true},
    {"jina-v5-nano", &kSetLlama3, true, true, true},
    {"jais-2", &kSetJais2, true, false, false},
    {"deepseek-llm", &kSetDeepseekLlm, false, false, false},
    {"deepseek-coder", &kSetDeepseekCoder, false, false, false},
    {"deepseek-v3", &kSetDeepseek3, false, false, false},
    {"hunyuan-dense", &kSetDeepseek3, false, false, false},
    {"joyai-llm", &kSetDeepseek3, false, false, false},
    {"hy_v4", &kSetDeepseek3, false, false, false},
    {"spark2_5", &kSetSpark, false, false, false},
    {"youtu", &kSetYoutu, false, true, false},
    {"falcon", &kSetFalcon, true, false, false},
    {"mpt", &kSetGpt2, true, false, false},
    {"starcoder", &kSetStarcoder, true, false, false},
    {"gpt-2", &kSetGpt2, true, false, false},
    {"phi-2", &kSetGpt2, true, false, false},
    {"jina-es", &kSetGpt2, true, false, false},
    {"jina-de", &kSetGpt2, true, false, false},
    {"gigachat", &kSetGpt2, true, false, false},
    {"jina-v2-es", &kSetGpt2, true, false, false},
    {"jina-v2-de", &kSetGpt2, true, false, false},
    {"a.x-4.0", &kSetGpt2, true, false, false},
    {"mellum", &kSetGpt2, true, false, false},
    {"modern-bert", &kSetGpt2, true, false, false},
    {"refact", &kSetStarcoder, true, false, false},
    {"command-r", &kSetStarcoder, false, false, false},
    {"qwen2", &kSetQwen2, false, false, false},
    {"deepseek-r1-qwen", &kSetQwen2, false, false, false},
    {"kormo", &kSetQwen2, false, false, false},
    {"f2llmv2", &kSetQwen2, false, false, false},
    {"qwen35", &kSetQwen35, false, false, false},
    {"stablelm2", &kSetQwen2, true, false, false},
    {"olmo", &kSetGpt2, true, false, false},
    {"dbrx", &kSetLlama3, true, false, false},
    {"smaug-bpe", &kSetLlama3, true, false, false},
    {"poro-chat", &kSetPoro, false, false, false},
    {"glm4", &kSetLlama3, true, false, false},
    {"chatglm-bpe", &kSetLlama3, true, false, false},
    {"viking", &kSetViking, false, false, false},
    {"jais", &kSetGpt2, true, false, false},
    {"tekken", &kSetTekken, false, true, true},
    {"smollm", &kSetStarcoder, false, false, false},
    {"codeshell", &kSetStarcoder, true, false, false},
    {"bloom", &kSetPoro, true, false, false},
    {"gpt3-finnish", &kSetPoro, true, false, false},
    {"exaone", &kSetStarcoder, true, false, false},
    {"exaone4", &kSetGpt2, true, false, false},
    {"exaone-moe", &kSetExaoneMoe, true, false, false},
    {"chameleon", &kSetChameleon, false, false, true},
    {"minerva-7b", &kSetStarcoder, true, false, false},
    {"megrez", &kSetQwen2, true, false, false},
    {"gpt-4o", &kSetGpt4o, false, false, false},
    {"llama4", &kSetGpt4o, false, false, false},
    {"kanana2", &kSetGpt4o, false, false, false},
    {"talkie", &kSetGpt4o, false, false, false},
    {"granite-embed-multi-97m", &kSetGraniteEmbMulti, false, true, false},
    {"tiny_aya", &kSetTinyAya, false, false, false},
    {"cohere2moe", &kSetTinyAya, false, false, false},
    {"superbpe", &kSetSuperBpe, false, false, false},
    {"trillion", &kSetGpt2, false, false, false},
    {"granite-docling", &kSetGpt2, false, false, false},
    {"bailingmoe", &kSetBailingMoe, false, false, false},
    {"bailingmoe2", &kSetBailingMoe, false, false, false},
    {"llada-moe", &kSetBailingMoe, false, false, false},
    {"seed-coder", &kSetSeedCoder, false, false, false},
    {"hunyuan", &kSetQwen2, false, false, false},
    {"ufakzeka", &kSetUfakzeka, false, false, false},
    {"grok-2", &kSetQwen2, false, false, false},
    {"laguna", &kSetLaguna, false, false, false},
    {"minimax-m2", &kSetGpt4o, false, false, false},
    {"solar-open", &kSetQwen2, false, false, false},
    {"mellum2", &kSetStarcoder, true, false, false},
    {"minicpm5", &kSetMiniCpm5, true, true, false},
};

// Names llama.cpp knows whose tokenization needs more than a regex list (custom splitters, no GPT-2 byte mapping,
// an appended SEP token); ember refuses them rather than produce different tokens.
const char* const kUnsupported[] = {
    "kimi-k2",      // hand-written splitter in llama.cpp's unicode.cpp
    "afmoe",        // hand-written digit splitter
    "gemma4",       // SentencePiece-style BPE over raw UTF-8
    "granite-embed-multi-311m",
    "sarvam-moe",
    "whitespace",
    "jina-v1-en",   // embedding vocabularies that append a SEP token
    "jina-v2-code",
    "roberta-bpe",
};

#ifdef EMBER_PCRE2
// llama.cpp maps \p{Lu}, \p{Ll}, \p{Lt}, \p{Lm} and \p{Lo} all to its one LETTER class; so do we.
std::string letters_as_one_class(std::string re) {
    for (const char* sub : {"\\p{Lu}", "\\p{Ll}", "\\p{Lt}", "\\p{Lm}", "\\p{Lo}"}) {
        size_t pos = 0;
        while ((pos = re.find(sub, pos)) != std::string::npos) re.replace(pos, 6, "\\p{L}");
    }
    return re;
}

std::string pcre2_message(int code) {
    PCRE2_UCHAR buf[256];
    if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0) return "PCRE2 error " + std::to_string(code);
    return std::string(reinterpret_cast<const char*>(buf));
}
#endif

}  // namespace

std::vector<std::string> pre_tokenizer_names() {
    std::vector<std::string> names;
    for (const Entry& e : kEntries) names.push_back(e.name);
    return names;
}

std::unique_ptr<PreTokenizer> PreTokenizer::create(const std::string& name) {
    const std::string key = name.empty() ? "default" : name;
    const Entry* entry = nullptr;
    for (const Entry& e : kEntries)
        if (key == e.name) entry = &e;
    if (!entry) {
        for (const char* u : kUnsupported)
            if (key == u)
                throw Error("key 'tokenizer.ggml.pre': '" + name +
                            "' needs a custom pre-tokenizer in llama.cpp that ember does not implement");
        throw Error("key 'tokenizer.ggml.pre': unknown pre-tokenizer '" + name +
                    "' (expected one of llama.cpp's names, e.g. 'default', 'gpt-2', 'llama-bpe', 'qwen2')");
    }
    std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
    pre->name_ = key;
    pre->flags_.clean_spaces = entry->clean_spaces;
    pre->flags_.ignore_merges = entry->ignore_merges;
    pre->flags_.add_bos = entry->add_bos;
#ifndef EMBER_PCRE2
    // Built without PCRE2 (EMBER_PCRE2=OFF, e.g. the Windows cross build): SentencePiece vocabularies still load.
    throw Error("tokenizer.ggml.pre '" + key + "': byte-level BPE pre-tokenizers need PCRE2, and this ember was " +
                "built without it (EMBER_PCRE2=OFF); use a build with PCRE2 or a SentencePiece model");
#else
    for (const char* re : *entry->regexes) {
        const std::string pattern = letters_as_one_class(re);
        int err = 0;
        PCRE2_SIZE err_offset = 0;
        pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                         PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_offset, nullptr);
        if (!code)
            throw Error("tokenizer.ggml.pre '" + key + "': regex " + std::to_string(pre->codes_.size()) +
                        " does not compile at offset " + std::to_string(err_offset) + ": " + pcre2_message(err));
        pre->codes_.push_back(code);
        pre->regexes_.push_back(pattern);
        pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // failing JIT leaves the interpreter, same results
    }
    return pre;
#endif
}

PreTokenizer::~PreTokenizer() {
#ifdef EMBER_PCRE2
    for (pcre2_code* code : codes_) pcre2_code_free(code);
#endif
}

#ifdef EMBER_PCRE2

namespace {

// Per-call PCRE2 scratch, freed on every exit path.
struct MatchScratch {
    pcre2_match_context* context = nullptr;
    pcre2_jit_stack* jit_stack = nullptr;
    pcre2_match_data* data = nullptr;
    size_t jit_stack_max = 0;
    MatchScratch() {
        context = pcre2_match_context_create(nullptr);
        data = pcre2_match_data_create(32, nullptr);
        grow_jit_stack();
    }
    ~MatchScratch() {
        pcre2_match_data_free(data);
        pcre2_jit_stack_free(jit_stack);
        pcre2_match_context_free(context);
    }
    // Patterns that repeat a group (gpt-4o's letter runs, exaone-moe's words) need JIT stack in proportion to
    // the piece they match: start at 1 MiB and grow 16x on demand, up to 1 GiB. False when it cannot grow.
    bool grow_jit_stack() {
        const size_t next = jit_stack_max == 0 ? (size_t(1) << 20) : jit_stack_max * 16;
        if (!context || next > (size_t(1) << 30)) return false;
        pcre2_jit_stack* s = pcre2_jit_stack_create(32 * 1024, next, nullptr);
        if (!s) return false;
        pcre2_jit_stack_free(jit_stack);
        jit_stack = s;
        jit_stack_max = next;
        pcre2_jit_stack_assign(context, nullptr, jit_stack);
        return true;
    }
};

}  // namespace

std::vector<std::pair<size_t, size_t>> PreTokenizer::split(const std::string& text) const {
    std::vector<std::pair<size_t, size_t>> pieces;
    if (text.empty()) return pieces;
    pieces.emplace_back(0, text.size());
    // PCRE2's \s includes U+180E (it is in \h); Unicode's White_Space, which llama.cpp uses, does not. Matching
    // runs on a copy where it is U+200B instead: same length, same category (Cf), not a space for either.
    const std::string* subject_text = &text;
    std::string patched;
    if (text.find("\xE1\xA0\x8E") != std::string::npos) {
        patched = text;
        for (size_t pos = 0; (pos = patched.find("\xE1\xA0\x8E", pos)) != std::string::npos; pos += 3)
            patched.replace(pos, 3, "\xE2\x80\x8B");
        subject_text = &patched;
    }
    MatchScratch scratch;
    if (!scratch.context || !scratch.data) throw Error("tokenizer.ggml.pre '" + name_ + "': out of memory in PCRE2");

    for (size_t r = 0; r < codes_.size(); r++) {
        std::vector<std::pair<size_t, size_t>> next;
        next.reserve(pieces.size() * 2);
        for (const auto& piece : pieces) {
            const auto* subject = reinterpret_cast<PCRE2_SPTR>(subject_text->data() + piece.first);
            const size_t len = piece.second;
            size_t last = 0;   // end of what has been emitted
            size_t start = 0;  // where the next search begins
            uint32_t options = 0;
            while (start <= len) {
                int rc = pcre2_match(codes_[r], subject, len, start, options | PCRE2_NO_UTF_CHECK, scratch.data,
                                     scratch.context);
                while (rc == PCRE2_ERROR_JIT_STACKLIMIT && scratch.grow_jit_stack())
                    rc = pcre2_match(codes_[r], subject, len, start, options | PCRE2_NO_UTF_CHECK, scratch.data,
                                     scratch.context);
                if (rc == PCRE2_ERROR_NOMATCH) {
                    if (options == 0 || start >= len) break;
                    // No non-empty match where the empty one was: search again one character on, as
                    // std::regex_iterator does after an empty match.
                    start += utf8_len(text[piece.first + start]);
                    options = 0;
                    continue;
                }
                if (rc < 0)
                    throw Error("tokenizer.ggml.pre '" + name_ + "': regex " + std::to_string(r) +
                                " failed at byte " + std::to_string(piece.first + start) + ": " + pcre2_message(rc));
                const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.data);
                const size_t ms = ov[0], me = ov[1];
                if (ms > last) next.emplace_back(piece.first + last, ms - last);
                if (me > ms) next.emplace_back(piece.first + ms, me - ms);
                last = me;
                start = me;
                options = me == ms ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0;
            }
            if (last < len) next.emplace_back(piece.first + last, len - last);
        }
        pieces.swap(next);
    }
    return pieces;
}

#else
std::vector<std::pair<size_t, size_t>> PreTokenizer::split(const std::string&) const {
    throw Error("tokenizer.ggml.pre '" + name_ + "': built without PCRE2 (EMBER_PCRE2=OFF)");  // create() refused
}
#endif

}  // namespace ember
