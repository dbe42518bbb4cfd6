// ember-perplexity: perplexity of a model on a text file, by llama.cpp's method (engine/perplexity.h).
// The running estimate "[1]12.3456,[2]..." and the "Final estimate" line go to stdout, the rest to stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "apps/app-args.h"
#include "apps/app-io.h"
#include "apps/app-model.h"
#include "engine/perplexity.h"

using namespace ember;

namespace {

struct PerplexityParams {
    ModelParams model;
    std::string file;
    int n_ctx = 512;     // tokens per chunk
    int n_batch = 2048;  // tokens per evaluation step, at most n_ctx
    int n_threads = 0;
    int n_chunks = -1;   // -1: all
};

int run(int argc, char** argv) {
    PerplexityParams p;
    ArgParser args("ember-perplexity", "Computes a model's perplexity on a text, in chunks of -c tokens.");
    args.add_string({"-m", "--model"}, &p.model.path, "FNAME", "model path");
    args.add_string({"-f", "--file"}, &p.file, "FNAME", "text file to evaluate");
    args.add_int({"-c", "--ctx-size"}, &p.n_ctx, "tokens per chunk");
    args.add_int({"-b", "--batch-size"}, &p.n_batch, "tokens per evaluation step (at most -c)");
    args.add_int({"-t", "--threads"}, &p.n_threads, "number of threads (0 or -1 = physical cores)");
    args.add_int({"--chunks"}, &p.n_chunks, "evaluate at most this many chunks (-1 = all)");
    CacheTypeArgs cache_types;
    app_add_cache_type_args(args, cache_types);
    args.add_int({"-ngl", "--gpu-layers", "--n-gpu-layers"}, &p.model.n_gpu_layers,
                 "layers to offload to the GPU, dense (-1 = automatic placement, 0 = CPU only)");
    app_add_placement_args(args, p.model);
    args.add_string({"--profile"}, &p.model.profile_path, "FNAME",
                    "profile from ember-profile: run the FFN sparse through its predictors (default: dense)");
    if (!app_parse_args(args, argc, argv)) return 0;  // --help or --version
    if (p.n_ctx < 8) throw Error("-c: invalid value '" + std::to_string(p.n_ctx) + "' (expected >= 8)");
    app_check_placement(args, p.model);
    p.model.n_ctx = p.n_ctx;
    app_apply_cache_types(cache_types, p.model);
    if (p.n_batch < 1) throw Error("-b: invalid value '" + std::to_string(p.n_batch) + "' (expected >= 1)");
    if (p.n_chunks == 0 || p.n_chunks < -1)
        throw Error("--chunks: invalid value '" + std::to_string(p.n_chunks) + "' (expected -1 or >= 1)");
    if (p.n_threads < 0) p.n_threads = 0;
    if (p.model.path.empty()) throw Error("no model given (use -m FILE; see --help)");
    if (p.file.empty()) throw Error("no text given (use -f FILE)");
    const std::string text = app_read_file("-f", p.file);

    std::fprintf(stderr, "%s\n", version_string().c_str());
    double load_ms = 0;
    std::unique_ptr<Model> model = app_load_model(p.model, &load_ms);
    app_log_model_info(*model, "model");
    const Tokenizer& tok = model->tokenizer();
    const int n_vocab = model->info().n_vocab;
    const int n_ctx = p.n_ctx;

    const auto t_tok = std::chrono::steady_clock::now();
    const std::vector<int32_t> tokens = tok.encode(text, tok.add_bos_default(), false);
    std::fprintf(stderr, "perplexity: tokenizing the input took %.2f ms: %zu tokens\n",
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_tok).count(),
                 tokens.size());
    if ((int64_t)tokens.size() < 2 * (int64_t)n_ctx)
        throw Error("'" + p.file + "' has " + std::to_string(tokens.size()) + " tokens; perplexity with a context of " +
                    std::to_string(n_ctx) + " needs at least " + std::to_string(2 * n_ctx) +
                    " tokens (use a longer text or a smaller -c)");
    int n_chunks = (int)(tokens.size() / n_ctx);
    if (p.n_chunks > 0) n_chunks = std::min(n_chunks, p.n_chunks);

    SessionParams sp;
    sp.n_ctx = n_ctx;
    sp.n_batch = std::min(p.n_batch, n_ctx);
    sp.n_threads = p.n_threads;
    app_apply_cache_types(cache_types, sp);
    Session session(*model, sp);
    std::fprintf(stderr, "perplexity: calculating perplexity over %d chunks, n_ctx = %d, batch_size = %d, n_threads = %d\n",
                 n_chunks, n_ctx, sp.n_batch, session.n_threads());

    // Each chunk from an empty context, its first token replaced by BOS; the second half scored.
    const int first = n_ctx / 2;
    const bool add_bos = tok.add_bos_default() && tok.bos() >= 0;
    PerplexityStats stats;
    std::vector<int32_t> chunk(n_ctx);
    std::vector<float> rows;  // (n_ctx - first, n_vocab) copy, only when the session's rows are not contiguous
    double eval_ms = 0;
    for (int c = 0; c < n_chunks; c++) {
        std::copy(tokens.begin() + (size_t)c * n_ctx, tokens.begin() + (size_t)(c + 1) * n_ctx, chunk.begin());
        if (add_bos) chunk[0] = tok.bos();
        const auto t0 = std::chrono::steady_clock::now();
        session.reset();
        session.eval(chunk, true);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        eval_ms += ms;
        if (c == 0)
            std::fprintf(stderr, "perplexity: %.2f seconds per pass - ETA %.2f minutes\n", ms / 1e3,
                         ms * n_chunks / 60e3);

        // perplexity_score reads rows first .. n_ctx-2 as one array; the view starts at row `first`.
        const float* view = session.logits(first);
        bool contiguous = true;
        for (int i = first + 1; i < n_ctx - 1 && contiguous; i++)
            contiguous = session.logits(i) == view + (size_t)(i - first) * n_vocab;
        if (!contiguous) {
            rows.resize((size_t)(n_ctx - first) * n_vocab);
            for (int i = first; i < n_ctx - 1; i++)
                std::copy(session.logits(i), session.logits(i) + n_vocab, rows.begin() + (size_t)(i - first) * n_vocab);
            view = rows.data();
        }
        perplexity_score(view, n_vocab, chunk.data() + first, n_ctx - first, 0, stats);
        std::printf("[%d]%.4f,", c + 1, stats.ppl());
        std::fflush(stdout);
    }
    std::printf("\n");
    const double err = stats.ppl_stderr();
    if (std::isfinite(err)) {
        std::printf("Final estimate: PPL = %.4f +/- %.5f\n", stats.ppl(), err);
    } else {
        std::printf("Final estimate: PPL = %.4f (no uncertainty: the scored log-probabilities have no spread)\n",
                    stats.ppl());
    }
    std::fflush(stdout);
    std::fprintf(stderr, "\nperplexity: load time = %.2f ms, eval time = %.2f ms / %d tokens (%.2f tokens per second), "
                 "%lld tokens scored\n",
                 load_ms, eval_ms, n_chunks * n_ctx, eval_ms > 0 ? 1e3 * n_chunks * n_ctx / eval_ms : 0.0,
                 (long long)stats.count);
    if (model->sparse()) {
        const SparseFfnStats& s = session.sparse_stats();
        std::fprintf(stderr, "perplexity: sparse FFN: predictors marked %.2f %% of neurons active, %.2f %% fired; "
                     "%llu tokens one at a time through the sparse operators, %llu in batches\n",
                     100.0 * s.predicted_share(), s.neurons ? 100.0 * s.fired / s.neurons : 0.0,
                     (unsigned long long)s.decode_tokens, (unsigned long long)(s.tokens - s.decode_tokens));
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return app_run([&] { return run(argc, argv); });
}
