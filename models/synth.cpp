#include "models/synth.h"
#include "predictor/profile.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <thread>

#include "engine/error.h"
#include "engine/gguf.h"
#include "models/llama.h"
#include "models/synth-builder.h"

namespace ember {

namespace {

// A hot neuron fires for nearly every token, but not for all: a probability of 1 has no finite threshold.
constexpr double kMaxFiring = 0.995;
constexpr const char* kVocabName = "ggml-vocab-llama-spm.gguf";

// llama.cpp's general.file_type (LLAMA_FTYPE_*) of a model whose matrices are all of type t.
uint32_t file_type(DType t) {
    switch (t) {
        case DType::DTYPE_F32: return 0;
        case DType::DTYPE_F16: return 1;
        case DType::DTYPE_Q4_0: return 2;
        case DType::DTYPE_Q8_0: return 7;
        case DType::DTYPE_BF16: return 32;
    }
    return 0;
}

std::string fmt(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

// Firing probabilities p_j = min(kMaxFiring, k w_j), w_j = x_j^-gamma, x_j = (j + 0.5) / n, hottest first.
struct PowerLaw {
    std::vector<double> w;
    PowerLaw(int n, double gamma) : w(n) {
        for (int j = 0; j < n; j++) w[j] = std::exp(-gamma * std::log((j + 0.5) / n));
    }
    double p(int j, double k) const { return std::min(kMaxFiring, k * w[j]); }
    double mean(double k) const {
        double s = 0;
        for (size_t j = 0; j < w.size(); j++) s += p((int)j, k);
        return s / (double)w.size();
    }
    // k such that mean(p) = rho: mean grows with k; bisection on log k.
    double solve_k(double rho) const {
        double lo = -1000, hi = 50;
        for (int it = 0; it < 64; it++) {
            const double mid = 0.5 * (lo + hi);
            (mean(std::exp(mid)) < rho ? lo : hi) = mid;
        }
        return std::exp(0.5 * (lo + hi));
    }
    // Share of sum(p) in the first n_top.
    double share(double k, int n_top) const {
        double top = 0, all = 0;
        for (size_t j = 0; j < w.size(); j++) {
            const double v = p((int)j, k);
            all += v;
            if ((int)j < n_top) top += v;
        }
        return top / all;
    }
};

double law_share(int n, double gamma, double rho, int n_top) {
    const PowerLaw law(n, gamma);
    return law.share(law.solve_k(rho), n_top);
}

constexpr double kMaxGamma = 30;

}  // namespace

void synth_apply_preset(const std::string& name, SynthParams& p) {
    if (name == "7b") {
        p.dim = 4096, p.n_layers = 32, p.n_ff = 11008, p.n_heads = 32, p.n_kv_heads = 32;
    } else if (name == "13b") {
        p.dim = 5120, p.n_layers = 40, p.n_ff = 13824, p.n_heads = 40, p.n_kv_heads = 40;
    } else if (name == "70b") {
        p.dim = 8192, p.n_layers = 80, p.n_ff = 28672, p.n_heads = 64, p.n_kv_heads = 8;
    } else {
        throw Error("--preset: unknown preset '" + name + "' (expected 7b, 13b or 70b)");
    }
}

int synth_hot_count(int n_ff) { return std::max(1, (int)std::lround(0.2 * n_ff)); }

std::vector<double> synth_firing_targets(int n_ff, double sparsity, double hot_share) {
    if (n_ff < 5) throw Error("synth: n_ff " + std::to_string(n_ff) + " is too small for a hot 20% (expected >= 5)");
    const double rho = 1.0 - sparsity;
    if (!(rho > 0.0 && rho < kMaxFiring))
        throw Error("--sparsity: value " + fmt(sparsity) + " outside (" + fmt(1 - kMaxFiring) + ", 1)");
    const int n_top = synth_hot_count(n_ff);
    const double lo_share = law_share(n_ff, 0.0, rho, n_top), hi_share = law_share(n_ff, kMaxGamma, rho, n_top);
    if (!(hot_share >= lo_share - 1e-9))
        throw Error("--hot-share: value " + fmt(hot_share) + " is below " + fmt(lo_share) +
                    ", the share of the hottest 20% when all neurons fire equally often");
    if (!(hot_share <= hi_share - 1e-4))
        throw Error("--hot-share: value " + fmt(hot_share) + " cannot be reached with --sparsity " + fmt(sparsity) +
                    ": the hottest 20% firing for every token take at most " + fmt(hi_share));
    // The share grows with gamma: bisection.
    double lo = 0, hi = kMaxGamma;
    for (int it = 0; it < 50; it++) {
        const double mid = 0.5 * (lo + hi);
        (law_share(n_ff, mid, rho, n_top) < hot_share ? lo : hi) = mid;
    }
    const PowerLaw law(n_ff, 0.5 * (lo + hi));
    const double k = law.solve_k(rho);
    std::vector<double> p(n_ff);
    for (int j = 0; j < n_ff; j++) p[j] = law.p(j, k);
    return p;
}

void synth_validate(const SynthParams& p) {
    auto range = [](const char* flag, int64_t v, int64_t lo, int64_t hi) {
        if (v < lo || v > hi)
            throw Error(std::string(flag) + ": value " + std::to_string(v) + " outside [" + std::to_string(lo) +
                        ", " + std::to_string(hi) + "]");
    };
    range("--dim", p.dim, 8, 65536);
    range("--layers", p.n_layers, 1, 1024);
    range("--n-ff", p.n_ff, 8, 1 << 20);
    range("--heads", p.n_heads, 1, p.dim);
    range("--kv-heads", p.n_kv_heads, 1, p.n_heads);
    range("--ctx", p.n_ctx, 1, 1 << 24);
    range("--calib-tokens", p.calib_tokens, 16, 1 << 16);
    range("-t", p.n_threads, 0, 4096);
    if (p.dim % p.n_heads != 0)
        throw Error("--dim " + std::to_string(p.dim) + " is not a multiple of --heads " + std::to_string(p.n_heads));
    if ((p.dim / p.n_heads) % 2 != 0)
        throw Error("--dim / --heads = " + std::to_string(p.dim / p.n_heads) + ": the head size must be even (RoPE)");
    if (p.n_heads % p.n_kv_heads != 0)
        throw Error("--heads " + std::to_string(p.n_heads) + " is not a multiple of --kv-heads " +
                    std::to_string(p.n_kv_heads));
    const int block = dtype_block_elems(p.type);
    for (auto [flag, v] : {std::pair<const char*, int>{"--dim", p.dim}, {"--n-ff", p.n_ff}})
        if (v % block != 0)
            throw Error(std::string(flag) + " " + std::to_string(v) + " is not a multiple of " + std::to_string(block) +
                        ", the block size of --type " + dtype_name(p.type));
    if (p.gate_rank != 0) range("--gate-rank", p.gate_rank, 1, p.dim / 2);
    if (!(p.gate_noise >= 0.0f && p.gate_noise < 1.0f))
        throw Error("--gate-noise: value " + fmt(p.gate_noise) + " outside [0, 1)");
    if (p.vocab_from.empty()) throw Error("synth: no vocabulary given (--vocab-from FILE)");
    synth_firing_targets(p.n_ff, p.sparsity, p.hot_share);  // throws when the law does not exist
}

std::string synth_default_vocab(const std::string& exe_path, const std::string& source_dir) {
    namespace fs = std::filesystem;
    std::vector<fs::path> tried;
    if (!exe_path.empty()) {
        std::error_code ec;
        fs::path exe = fs::weakly_canonical(fs::absolute(exe_path, ec), ec);
        if (exe.empty()) exe = exe_path;
        const fs::path dir = exe.parent_path();
        tried.push_back(dir / ".." / ".." / "models" / kVocabName);  // <src>/build/bin/ember-synth
        tried.push_back(dir / ".." / "models" / kVocabName);
        tried.push_back(dir / ".." / "share" / "ember" / kVocabName);  // <prefix>/bin/ember-synth
    }
    if (!source_dir.empty()) tried.push_back(fs::path(source_dir) / "models" / kVocabName);
    std::string list;
    for (const fs::path& c : tried) {
        std::error_code ec;
        if (fs::is_regular_file(c, ec)) return c.lexically_normal().string();
        list += (list.empty() ? "" : ", ") + c.lexically_normal().string();
    }
    throw Error(std::string("the default vocabulary ") + kVocabName + " was not found (tried: " +
                (list.empty() ? "nothing" : list) + "); pass --vocab-from FILE");
}

// general.name of the model p describes.
std::string synth_model_name(const SynthParams& p) {
    return "ember-synth " + std::to_string(p.dim) + "x" + std::to_string(p.n_layers) + " sparsity " + fmt(p.sparsity) +
           " seed " + std::to_string(p.seed);
}

ModelProfile synth_construction_profile(const SynthParams& p, const SynthReport& report) {
    if ((int)report.predictors.size() != p.n_layers)
        throw Error("synth: no construction predictors in the report (set construction_predictors)");
    ModelProfile prof;
    prof.model_name = synth_model_name(p);
    prof.n_layers = p.n_layers;
    prof.dim = p.dim;
    prof.n_ff = p.n_ff;
    prof.n_tokens = (uint64_t)p.calib_tokens;
    prof.weight_type = DType::DTYPE_Q8_0;
    prof.layers.resize(p.n_layers);
    for (int l = 0; l < p.n_layers; l++) {
        LayerProfile& L = prof.layers[l];
        L.predictor = report.predictors[l];
        L.recall = report.predictor_recall[l];
        L.precision = report.predictor_precision[l];
        L.sparsity = report.predictor_sparsity[l];
        if (l < (int)report.neuron_freq.size()) L.freq = report.neuron_freq[l];
    }
    return prof;
}

SynthReport synth_write(const SynthParams& params, const std::string& path, const SynthLog& log) {
    SynthParams p = params;
    synth_validate(p);
    if (p.n_threads == 0) p.n_threads = (int)std::max(1u, std::thread::hardware_concurrency());

    // The tokenizer: every tokenizer.* key of the vocabulary file, which also fixes n_vocab.
    std::unique_ptr<GGUFFile> vocab = GGUFFile::open(p.vocab_from);
    const GGUFValue* tokens = vocab->find("tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GGUFType::GGUF_TYPE_ARRAY || tokens->arr.empty())
        throw Error(p.vocab_from + ": key 'tokenizer.ggml.tokens': expected a non-empty array of strings (a GGUF "
                    "with a vocabulary, e.g. models/" + kVocabName + ")");
    const int n_vocab = (int)tokens->arr.size();
    const int bos = vocab->has("tokenizer.ggml.bos_token_id") ? (int)vocab->get_u32("tokenizer.ggml.bos_token_id") : -1;
    if (bos >= n_vocab)
        throw Error(p.vocab_from + ": key 'tokenizer.ggml.bos_token_id': " + std::to_string(bos) +
                    " outside the vocabulary of " + std::to_string(n_vocab));

    ThreadPool pool(p.n_threads);
    SynthBuilder builder(p, n_vocab, bos, pool, log);
    const int head_dim = p.dim / p.n_heads;

    GGUFWriter w;
    w.set_string("general.architecture", "llama");
    w.set_string("general.name", synth_model_name(p));
    w.set_u32("general.file_type", file_type(p.type));
    ModelInfo hp;
    hp.n_ctx_train = p.n_ctx;
    hp.dim = p.dim;
    hp.n_layers = p.n_layers;
    hp.n_ff = p.n_ff;
    hp.n_heads = p.n_heads;
    hp.n_kv_heads = p.n_kv_heads;
    hp.n_rot = head_dim;
    hp.n_vocab = n_vocab;
    hp.ffn_act = "relu";
    llama_write_hparams(w, hp);
    w.set_f32("ember.synth.sparsity", p.sparsity);
    w.set_f32("ember.synth.hot_share", p.hot_share);
    w.set_u64("ember.synth.seed", p.seed);
    w.set_u32("ember.synth.gate_rank", (uint32_t)builder.gate_rank());
    w.set_f32("ember.synth.gate_noise", p.gate_noise);
    w.set_u32("ember.synth.calib_tokens", (uint32_t)p.calib_tokens);
    for (const auto& [key, value] : vocab->metadata())
        if (key.rfind("tokenizer.", 0) == 0) w.set_value(key, value);

    // Tensors in llama.cpp's conversion order; each matrix produced when the writer reaches it.
    const uint32_t type = (uint32_t)p.type;
    auto bytes = [&](int64_t rows, int64_t cols) { return dtype_row_bytes(p.type, cols) * (size_t)rows; };
    const std::vector<float> ones(p.dim, 1.0f);
    w.add_tensor_generated("token_embd.weight", type, {p.dim, n_vocab}, bytes(n_vocab, p.dim),
                           [&](uint8_t* dst) { builder.fill_token_embd(dst); });
    const int q_dim = p.n_heads * head_dim, kv_dim = p.n_kv_heads * head_dim;
    struct Matrix {
        const char* name;
        SynthTensor t;
        int64_t rows, cols;
    };
    const Matrix attn[] = {{"attn_q", SynthTensor::SYNTH_ATTN_Q, q_dim, p.dim},
                           {"attn_k", SynthTensor::SYNTH_ATTN_K, kv_dim, p.dim},
                           {"attn_v", SynthTensor::SYNTH_ATTN_V, kv_dim, p.dim},
                           {"attn_output", SynthTensor::SYNTH_ATTN_OUTPUT, p.dim, q_dim}};
    const Matrix ffn[] = {{"ffn_gate", SynthTensor::SYNTH_FFN_GATE, p.n_ff, p.dim},
                          {"ffn_up", SynthTensor::SYNTH_FFN_UP, p.n_ff, p.dim},
                          {"ffn_down", SynthTensor::SYNTH_FFN_DOWN, p.dim, p.n_ff}};
    for (int l = 0; l < p.n_layers; l++) {
        const std::string pre = "blk." + std::to_string(l) + ".";
        auto add = [&](const Matrix& m) {
            const SynthTensor t = m.t;
            w.add_tensor_generated(pre + m.name + ".weight", type, {m.cols, m.rows}, bytes(m.rows, m.cols),
                                   [&builder, l, t](uint8_t* dst) { builder.fill_layer(l, t, dst); });
        };
        w.add_tensor(pre + "attn_norm.weight", 0, {p.dim}, ones.data(), ones.size() * 4);
        for (const Matrix& m : attn) add(m);
        w.add_tensor(pre + "ffn_norm.weight", 0, {p.dim}, ones.data(), ones.size() * 4);
        for (const Matrix& m : ffn) add(m);
    }
    w.add_tensor("output_norm.weight", 0, {p.dim}, ones.data(), ones.size() * 4);
    w.add_tensor_generated("output.weight", type, {p.dim, n_vocab}, bytes(n_vocab, p.dim),
                           [&](uint8_t* dst) { builder.fill_output(dst); });
    w.write(path);

    SynthReport report = std::move(builder.predictors());
    report.layers = builder.stats();
    report.n_vocab = n_vocab;
    report.gate_rank = builder.gate_rank();
    std::error_code ec;
    report.file_bytes = (uint64_t)std::filesystem::file_size(path, ec);
    return report;
}

}  // namespace ember
