// ember-sparsity: per-layer FFN activation sparsity of a model on a text, and the share of firings that the
// hottest neurons account for (engine/ffn-stats.h). The table (or with --json one JSON line) goes to stdout.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "apps/app-args.h"
#include "apps/app-io.h"
#include "apps/app-model.h"
#include "engine/ffn-stats.h"

using namespace ember;

namespace {

int run(int argc, char** argv) {
    ModelParams mp;
    mp.n_gpu_layers = 0;  // the FFN observer reads the CPU engine's activations
    FfnMeasureParams p;
    std::string file;
    int64_t max_tokens = 0;
    float hot = 0.2f;
    bool json = false;
    ArgParser args("ember-sparsity",
                   "Measures per-layer FFN activation sparsity (share of neurons that output exactly zero) and the\n"
                   "share of all firings owed to the hottest neurons, running the model over a text in chunks.");
    args.add_string({"-m", "--model"}, &mp.path, "FNAME", "model path");
    args.add_string({"-f", "--file"}, &file, "FNAME", "text file");
    args.add_int({"-c", "--ctx-size"}, &p.n_ctx, "tokens per chunk, each from an empty context");
    args.add_i64({"--tokens"}, &max_tokens, "measure at most this many tokens (0 = the whole text)");
    args.add_int({"-t", "--threads"}, &p.n_threads, "number of threads (0 = physical cores)");
    args.add_float({"--threshold"}, &p.threshold, "a neuron fires when |h| > this (0: h != 0, for ReLU models)");
    args.add_float({"--hot"}, &hot, "fraction of neurons counted as hot");
    args.add_flag({"--json"}, &json, "print one JSON line instead of the table");
    if (!app_parse_args(args, argc, argv)) return 0;  // --help or --version
    if (p.n_ctx < 1) throw Error("-c: invalid value '" + std::to_string(p.n_ctx) + "' (expected >= 1)");
    if (max_tokens < 0) throw Error("--tokens: invalid value '" + std::to_string(max_tokens) + "' (expected >= 0)");
    if (!(hot > 0.0f && hot <= 1.0f)) throw Error("--hot: invalid value (expected 0 < x <= 1)");
    if (file.empty()) throw Error("no text given (use -f FILE)");
    p.max_tokens = max_tokens;
    const std::string text = app_read_file("-f", file);

    double load_ms = 0;
    std::unique_ptr<Model> model = app_load_model(mp, &load_ms);
    app_log_model_info(*model, "model");
    if (model->info().ffn_act != "relu" && p.threshold == 0.0f)
        std::fprintf(stderr, "sparsity: warning: the FFN activation is %s, which is never exactly zero; "
                     "use --threshold to count small activations as not firing\n", model->info().ffn_act.c_str());
    const Tokenizer& tok = model->tokenizer();
    const std::vector<int32_t> tokens = tok.encode(text, tok.add_bos_default(), false);
    const auto t0 = std::chrono::steady_clock::now();
    const FfnStats s = ffn_stats_measure(*model, tokens, p);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "sparsity: %lld tokens in chunks of %d, %.2f s\n", (long long)s.n_tokens[0], p.n_ctx,
                 ms / 1e3);

    const int hot_pct = (int)(hot * 100 + 0.5f);
    if (json) {
        std::string sp, hs, dead;
        for (int l = 0; l < s.n_layers; l++) {
            const FfnLayerSummary r = ffn_stats_layer(s, l, hot);
            char buf[64];
            std::snprintf(buf, sizeof buf, "%s%.4f", l ? ", " : "", r.sparsity);
            sp += buf;
            std::snprintf(buf, sizeof buf, "%s%.4f", l ? ", " : "", r.hot_share);
            hs += buf;
            dead += (l ? ", " : "") + std::to_string(r.n_dead);
        }
        const FfnLayerSummary t = ffn_stats_total(s, hot);
        std::printf("{\"tokens\": %lld, \"n_ff\": %d, \"threshold\": %g, \"hot_fraction\": %g, \"sparsity\": [%s], "
                    "\"hot_share\": [%s], \"dead\": [%s], \"sparsity_all\": %.4f, \"hot_share_all\": %.4f}\n",
                    (long long)t.n_tokens, s.n_ff, (double)p.threshold, (double)hot, sp.c_str(), hs.c_str(),
                    dead.c_str(), t.sparsity, t.hot_share);
        return 0;
    }
    std::printf("%5s  %9s  %13s  %12s  %6s\n", "layer", "sparsity", "active/token", ("hot" + std::to_string(hot_pct) +
                "%-share").c_str(), "dead");
    for (int l = 0; l < s.n_layers; l++) {
        const FfnLayerSummary r = ffn_stats_layer(s, l, hot);
        std::printf("%5d  %9.4f  %8.1f/%-4d  %12.4f  %6d\n", l, r.sparsity, r.mean_active, s.n_ff, r.hot_share,
                    r.n_dead);
    }
    const FfnLayerSummary t = ffn_stats_total(s, hot);
    std::printf("%5s  %9.4f  %13s  %12.4f  %6d\n", "all", t.sparsity, "", t.hot_share, t.n_dead);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return app_run([&] { return run(argc, argv); });
}
