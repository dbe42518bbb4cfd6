// ember-synth: writes a synthetic llama-architecture GGUF of any shape whose dense forward pass has the activation
// statistics of a ReLU-fied model (the recipe is in models/synth.h).
#include <strings.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "apps/app-args.h"
#include "engine/ember.h"
#include "models/synth.h"
#include "predictor/profile.h"

using namespace ember;

namespace {

DType parse_type(const std::string& s) {
    for (DType t : {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_BF16, DType::DTYPE_Q8_0, DType::DTYPE_Q4_0})
        if (strcasecmp(s.c_str(), dtype_name(t)) == 0) return t;
    throw Error("--type: invalid value '" + s + "' (expected F32, F16, BF16, Q8_0 or Q4_0)");
}

std::string exe_path(const char* argv0) {
    std::error_code ec;
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::string(argv0) : self.string();
}

int run(int argc, char** argv) {
    SynthParams p;
    std::string preset, out, type = "F16";
    int64_t seed = (int64_t)p.seed;
    bool quiet = false;
    ArgParser args("ember-synth",
                   "Writes a llama-architecture GGUF with seeded random weights whose dense forward pass has ReLU\n"
                   "activation sparsity: per layer, --sparsity of the FFN neurons stay silent for a token, the\n"
                   "hottest 20% take --hot-share of all firings, and which neurons fire is a low-rank function of\n"
                   "the FFN input (W_gate = A*B + E).");
    args.add_string({"-o", "--output"}, &out, "FNAME", "output GGUF file (required)");
    args.add_choice({"--preset"}, &preset, {"7b", "13b", "70b"}, "a Llama-2 shape; --dim etc. given too override it");
    args.add_int({"--dim"}, &p.dim, "embedding length");
    args.add_int({"--layers"}, &p.n_layers, "number of layers");
    args.add_int({"--n-ff"}, &p.n_ff, "FFN neurons per layer");
    args.add_int({"--heads"}, &p.n_heads, "attention heads");
    args.add_int({"--kv-heads"}, &p.n_kv_heads, "key/value heads (default: --heads)");
    args.add_int({"--ctx"}, &p.n_ctx, "context length written to the file");
    args.add_string({"--type"}, &type, "F32|F16|BF16|Q8_0|Q4_0", "type of every weight matrix");
    args.add_float({"--sparsity"}, &p.sparsity, "target share of FFN neurons that do not fire, per layer");
    args.add_float({"--hot-share"}, &p.hot_share, "target share of all firings taken by the hottest 20% of neurons");
    args.add_int({"--gate-rank"}, &p.gate_rank, "rank r0 of W_gate's low-rank part (0 = dim/16, at least 8)");
    args.add_float({"--gate-noise"}, &p.gate_noise, "share of a gate row's squared norm in full-rank noise");
    args.add_int({"--calib-tokens"}, &p.calib_tokens, "calibration tokens pushed through the layers");
    args.add_i64({"-s", "--seed"}, &seed, "seed: the same seed and flags give the same bytes");
    args.add_string({"--vocab-from"}, &p.vocab_from, "FNAME",
                    "GGUF whose tokenizer is copied (default: models/ggml-vocab-llama-spm.gguf, 32,000 tokens)");
    args.add_int({"-t", "--threads"}, &p.n_threads, "threads (0 = all hardware threads)");
    std::string predictors_out;
    args.add_string({"--predictors-out"}, &predictors_out, "FNAME",
                    "also write a profile holding the construction's predictors (the gate's low-rank rule, Q8_0)");
    std::string predictor_hidden = "linear";
    args.add_choice({"--predictor-hidden"}, &predictor_hidden, {"linear", "relu"},
                    "hidden activation of those predictors: linear (rank r0+1), or relu (twice the rank)");
    args.add_flag({"-q", "--quiet"}, &quiet, "no per-layer progress");
    if (!app_parse_args(args, argc, argv)) return 0;  // --help or --version
    // A preset sets the shape; explicit shape flags override it (parse order does not matter).
    if (!preset.empty()) {
        SynthParams shape = p;
        synth_apply_preset(preset, shape);
        if (!args.seen("--dim")) p.dim = shape.dim;
        if (!args.seen("--layers")) p.n_layers = shape.n_layers;
        if (!args.seen("--n-ff")) p.n_ff = shape.n_ff;
        if (!args.seen("--heads")) p.n_heads = shape.n_heads;
        if (!args.seen("--kv-heads")) p.n_kv_heads = shape.n_kv_heads;
    }
    if (!args.seen("--kv-heads") && (preset.empty() || args.seen("--heads"))) p.n_kv_heads = p.n_heads;
    if (seed < 0) throw Error("--seed: invalid value '" + std::to_string(seed) + "' (expected >= 0)");
    p.seed = (uint64_t)seed;
    p.type = parse_type(type);
    if (out.empty()) throw Error("no output file given (use -o FILE; see --help)");
    if (p.vocab_from.empty()) {
#ifdef EMBER_SOURCE_DIR
        const std::string source_dir = EMBER_SOURCE_DIR;
#else
        const std::string source_dir;
#endif
        p.vocab_from = synth_default_vocab(exe_path(argv[0]), source_dir);
    }
    synth_validate(p);

    std::fprintf(stderr, "ember-synth: dim %d, %d layers, n_ff %d, %d heads (%d KV), %s, sparsity %g, hot share %g, "
                 "seed %llu, vocabulary %s\n",
                 p.dim, p.n_layers, p.n_ff, p.n_heads, p.n_kv_heads, dtype_name(p.type), (double)p.sparsity,
                 (double)p.hot_share, (unsigned long long)p.seed, p.vocab_from.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    SynthLog log;
    if (!quiet) log = [](const std::string& line) { std::fprintf(stderr, "ember-synth: %s\n", line.c_str()); };
    p.construction_predictors = !predictors_out.empty();
    p.predictor_hidden = predictor_hidden == "relu" ? PredictorHidden::PREDICTOR_HIDDEN_RELU
                                                    : PredictorHidden::PREDICTOR_HIDDEN_LINEAR;
    if (!predictors_out.empty() && predictors_out == out) throw Error("--predictors-out: same file as -o");
    const SynthReport r = synth_write(p, out, log);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "ember-synth: wrote %s: %.2f GB, %d tokens, gate rank %d, in %.1f s\n", out.c_str(),
                 r.file_bytes / 1e9, r.n_vocab, r.gate_rank, s);
    if (!predictors_out.empty()) {
        const ModelProfile prof = synth_construction_profile(p, r);
        profile_write(prof, predictors_out);
        std::fprintf(stderr, "ember-synth: wrote %s: construction predictors, %s, of rank %d (Q8_0), calibration "
                     "recall %.3f, predicted sparsity %.3f (layer 0)\n", predictors_out.c_str(),
                     predictor_hidden_name(prof.layers[0].predictor.hidden), prof.layers[0].predictor.rank,
                     (double)prof.layers[0].recall, (double)prof.layers[0].sparsity);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return app_run([&] { return run(argc, argv); });
}
