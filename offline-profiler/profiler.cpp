#include "offline-profiler/profiler.h"

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "engine/cpu-info.h"
#include "engine/error.h"
#include "models/llama.h"

namespace ember {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double kib(double bytes) { return bytes / 1024.0; }

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

}  // namespace

uint64_t profile_sample_bytes_per_token(const ModelInfo& info) {
    return (uint64_t)info.n_layers * ((uint64_t)info.dim * sizeof(float) + (uint64_t)info.n_ff);
}

int64_t profile_default_tokens(bool train_on_gpu, uint64_t sample_bytes_per_token, uint64_t host_memory) {
    if (!train_on_gpu || host_memory == 0 || sample_bytes_per_token == 0) return kProfileTokensCpu;
    const uint64_t fit = host_memory / 10 * 4 / sample_bytes_per_token;
    return std::clamp<int64_t>((int64_t)std::min<uint64_t>(fit, (uint64_t)kProfileTokensGpu), kProfileTokensCpu,
                               kProfileTokensGpu);
}

ModelProfile profile_model(const Model& model, const std::vector<int32_t>& tokens, const ProfileParams& p,
                           std::vector<ProfileLayerReport>* report) {
    if (tokens.empty()) throw Error("profile_model: no tokens");
    if (p.n_ctx < 1) throw Error("profile_model: n_ctx must be >= 1, found " + std::to_string(p.n_ctx));
    if (p.max_tokens < 0) throw Error("profile_model: max_tokens must be >= 0, found " + std::to_string(p.max_tokens));
    if (p.max_samples < 2)
        throw Error("profile_model: max_samples must be >= 2, found " + std::to_string(p.max_samples));
    const ModelInfo& info = model.info();
    const int n_layers = info.n_layers, dim = info.dim, n_ff = info.n_ff;
    const int64_t total = p.max_tokens > 0 ? std::min<int64_t>(p.max_tokens, (int64_t)tokens.size())
                                           : (int64_t)tokens.size();
    const int64_t cap = std::min<int64_t>(p.max_samples, total);
    if (cap < 2) throw Error("profile_model: need at least 2 tokens to train and hold out, found " +
                             std::to_string(total));

    // Per layer: firing counts over all tokens, and a reservoir of `cap` sample rows (Vitter's algorithm R).
    // The slot of each token is drawn once, so every layer keeps the same tokens.
    std::vector<std::vector<int64_t>> fired_count(n_layers, std::vector<int64_t>(n_ff, 0));
    std::vector<PredictorSamples> samples(n_layers);
    for (PredictorSamples& s : samples) {
        s.dim = dim;
        s.n_ff = n_ff;
        s.x.assign((size_t)cap * dim, 0.0f);
        s.fired.assign((size_t)cap * n_ff, 0);
    }
    std::mt19937_64 rng(p.train.seed);
    std::vector<int64_t> slot;  // (chunk tokens): reservoir row of each token of the current chunk, -1 = not kept
    std::vector<int> seen(n_layers, 0);  // per layer, tokens of the current chunk observed so far: an eval may show
                                         // a layer its tokens in several batches (the GPU's, of 32)

    SessionParams sp;
    sp.n_ctx = p.n_ctx;
    sp.n_batch = p.n_ctx;
    sp.n_threads = p.n_threads;
    auto session = std::make_unique<Session>(model, sp);
    session->set_ffn_observer([&](int layer, const float* x_in, int x_dim, const float* h, int n, int h_ff) {
        if (layer < 0 || layer >= n_layers || x_dim != dim || h_ff != n_ff || n < 0 ||
            seen[layer] + n > (int)slot.size())
            throw Error("profile_model: observer got layer " + std::to_string(layer) + ", dim " +
                        std::to_string(x_dim) + ", n_ff " + std::to_string(h_ff) + ", " + std::to_string(n) +
                        " tokens, expected < " + std::to_string(n_layers) + ", " + std::to_string(dim) + ", " +
                        std::to_string(n_ff) + ", at most the chunk's " + std::to_string(slot.size()));
        int64_t* count = fired_count[layer].data();
        PredictorSamples& s = samples[layer];
        const int base = seen[layer];
        seen[layer] += n;
        for (int t = 0; t < n; t++) {
            const float* ht = h + (size_t)t * n_ff;
            for (int i = 0; i < n_ff; i++) count[i] += ht[i] != 0.0f;
            const int64_t row = slot[base + t];
            if (row < 0) continue;
            std::copy(x_in + (size_t)t * dim, x_in + (size_t)(t + 1) * dim, s.x.begin() + row * dim);
            uint8_t* f = s.fired.data() + row * n_ff;
            for (int i = 0; i < n_ff; i++) f[i] = ht[i] != 0.0f;
        }
    });

    const Tokenizer& tok = model.tokenizer();
    const bool bos = tok.add_bos_default() && tok.bos() >= 0;  // as ffn_stats_measure and ember-perplexity do
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> chunk;
    for (int64_t begin = 0; begin < total; begin += p.n_ctx) {
        const int64_t end = std::min<int64_t>(begin + p.n_ctx, total);
        chunk.assign(tokens.begin() + begin, tokens.begin() + end);
        if (bos) chunk[0] = tok.bos();
        slot.assign(chunk.size(), -1);
        std::fill(seen.begin(), seen.end(), 0);
        for (int64_t g = begin; g < end; g++) {
            if (g < cap) {
                slot[g - begin] = g;
            } else {
                const int64_t j = (int64_t)(rng() % (uint64_t)(g + 1));
                if (j < cap) slot[g - begin] = j;
            }
        }
        session->reset();
        session->eval(chunk, false);
        for (int l = 0; l < n_layers; l++)
            if (seen[l] != (int)chunk.size())
                throw Error("profile_model: layer " + std::to_string(l) + " showed " + std::to_string(seen[l]) +
                            " of the chunk's " + std::to_string(chunk.size()) + " tokens to the observer");
        if (p.verbose)
            std::fprintf(stderr, "\rprofile: recorded %lld/%lld tokens (%.1f s)", (long long)end, (long long)total,
                         seconds_since(t0));
    }
    if (p.verbose) std::fprintf(stderr, "\n");
    session.reset();  // its threads and KV cache are not needed for training

    ModelProfile prof;
    prof.model_name = info.name;
    prof.n_layers = n_layers;
    prof.dim = dim;
    prof.n_ff = n_ff;
    prof.n_tokens = (uint64_t)total;
    prof.weight_type = p.train.weight_type;
    prof.layers.resize(n_layers);
    if (report) report->assign(n_layers, ProfileLayerReport());
    ThreadPool pool(p.n_threads > 0 ? p.n_threads : std::max(1, cpu_physical_cores()));
    for (int l = 0; l < n_layers; l++) {
        LayerProfile& lp = prof.layers[l];
        lp.freq.resize(n_ff);
        for (int i = 0; i < n_ff; i++) lp.freq[i] = (float)((double)fired_count[l][i] / (double)total);
        // Bytes a token reads per layer: the predictor, then the predicted-active share of gate, up and down.
        const LlamaLayer& w = model.llama().layers[l];
        ProfileLayerReport rep;
        rep.ffn_bytes = (double)(w.w_gate.bytes() + w.w_up.bytes() + w.w_down.bytes());
        const auto t1 = std::chrono::steady_clock::now();
        PredictorTrainResult r;
        if (p.auto_rank) {
            PredictorRankSearch search;
            search.ranks = p.ranks;
            search.ffn_bytes = rep.ffn_bytes;
            if (p.verbose)
                search.on_trial = [&](const PredictorRankTrial& t) {
                    std::fprintf(stderr, "profile: layer %d of %d, rank %4d: recall %.4f sparsity %.4f (true %.4f), "
                                 "predictor %.1f KiB + FFN share = %.1f KiB/token (dense FFN %.1f KiB; %.1f s)\n",
                                 l, n_layers, t.rank, t.holdout.recall, t.holdout.predicted_sparsity,
                                 t.holdout.true_sparsity, kib((double)t.predictor_bytes), kib(t.expected_bytes),
                                 kib(rep.ffn_bytes), t.seconds);
                };
            PredictorRankResult rr = predictor_train_auto(samples[l], p.train, search, pool);
            r = std::move(rr.best);
            rep.trials = std::move(rr.trials);
            rep.stop_reason = rr.stop_reason;
        } else {
            r = predictor_train(samples[l], p.train, pool);
            PredictorRankTrial t;
            t.rank = r.predictor.rank;
            t.holdout = r.holdout;
            t.threshold = r.predictor.threshold;
            t.predictor_bytes = r.predictor_bytes;
            t.expected_bytes = predictor_expected_bytes(r.predictor_bytes, r.holdout, rep.ffn_bytes);
            t.seconds = seconds_since(t1);
            rep.trials.push_back(t);
        }
        samples[l] = PredictorSamples();  // free this layer's samples early
        rep.seconds = seconds_since(t1);
        rep.holdout = r.holdout;
        rep.predictor_bytes = r.predictor_bytes;
        rep.expected_bytes = predictor_expected_bytes(r.predictor_bytes, r.holdout, rep.ffn_bytes);
        lp.predictor = std::move(r.predictor);
        lp.recall = (float)r.holdout.recall;
        lp.precision = (float)r.holdout.precision;
        lp.sparsity = (float)r.holdout.predicted_sparsity;
        if (p.verbose)
            std::fprintf(stderr, "profile: layer %d of %d: rank %d%s%s: recall %.4f precision %.4f sparsity %.4f "
                         "(true %.4f), %.1f KiB/token of %.1f KiB dense (loss %.4f, %.1f s)\n", l, n_layers,
                         lp.predictor.rank, rep.stop_reason.empty() ? "" : ", search stopped: ",
                         rep.stop_reason.c_str(), r.holdout.recall, r.holdout.precision,
                         r.holdout.predicted_sparsity, r.holdout.true_sparsity, kib(rep.expected_bytes),
                         kib(rep.ffn_bytes), (double)r.final_loss, rep.seconds);
        if (report) (*report)[l] = std::move(rep);
    }
    return prof;
}

std::string profile_table(const ModelProfile& prof, const std::vector<ProfileLayerReport>& report) {
    if ((int)report.size() != prof.n_layers || (int)prof.layers.size() != prof.n_layers)
        throw Error("profile_table: " + std::to_string(prof.n_layers) + " layers, but " +
                    std::to_string(prof.layers.size()) + " profiles and " + std::to_string(report.size()) +
                    " reports");
    std::string out = format("predictor weights: %s; expected = predictor + predicted-active share of the FFN, "
                             "read per token\n", dtype_name(prof.weight_type));
    out += format("%5s %5s %11s %7s %9s %9s %9s %10s %12s %10s\n", "layer", "rank", "threshold", "recall",
                  "precision", "pred.sp", "true.sp", "pred.KiB", "expect.KiB", "dense.KiB");
    double pred = 0, expected = 0, dense = 0;
    for (int l = 0; l < prof.n_layers; l++) {
        const LayerProfile& lp = prof.layers[l];
        const ProfileLayerReport& r = report[l];
        out += format("%5d %5d %11.4g %7.4f %9.4f %9.4f %9.4f %10.1f %12.1f %10.1f\n", l, lp.predictor.rank,
                      (double)lp.predictor.threshold, (double)lp.recall, (double)lp.precision, (double)lp.sparsity,
                      r.holdout.true_sparsity, kib((double)r.predictor_bytes), kib(r.expected_bytes),
                      kib(r.ffn_bytes));
        pred += (double)r.predictor_bytes;
        expected += r.expected_bytes;
        dense += r.ffn_bytes;
    }
    out += format("%5s %5s %11s %7s %9s %9s %9s %10.1f %12.1f %10.1f  (%.3f of dense)\n", "all", "", "", "", "",
                  "", "", kib(pred), kib(expected), kib(dense), dense > 0 ? expected / dense : 0.0);
    return out;
}

}  // namespace ember
