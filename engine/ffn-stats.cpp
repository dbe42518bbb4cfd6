#include "engine/ffn-stats.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

namespace ember {

FfnStats::FfnStats(int n_layers_, int n_ff_, float threshold_)
    : n_layers(n_layers_), n_ff(n_ff_), threshold(threshold_) {
    if (n_layers < 1 || n_ff < 1)
        throw Error("FfnStats: expected n_layers >= 1 and n_ff >= 1, found " + std::to_string(n_layers) + " and " +
                    std::to_string(n_ff));
    if (!(threshold >= 0.0f)) throw Error("FfnStats: threshold must be >= 0, found " + std::to_string(threshold));
    n_tokens.assign(n_layers, 0);
    fired.assign((size_t)n_layers * n_ff, 0);
}

void FfnStats::observe(int layer, const float* h, int n, int width) {
    if (layer < 0 || layer >= n_layers)
        throw Error("FfnStats: layer " + std::to_string(layer) + " outside [0, " + std::to_string(n_layers) + ")");
    if (width != n_ff)
        throw Error("FfnStats: layer " + std::to_string(layer) + " has " + std::to_string(width) +
                    " neurons, expected n_ff " + std::to_string(n_ff));
    int64_t* f = fired.data() + (size_t)layer * n_ff;
    for (int t = 0; t < n; t++) {
        const float* row = h + (size_t)t * n_ff;
        for (int i = 0; i < n_ff; i++) f[i] += std::fabs(row[i]) > threshold;
    }
    n_tokens[layer] += n;
}

namespace {

// Firings of layer l's hot set, and of all its neurons.
void layer_firings(const FfnStats& s, int l, double hot_fraction, double* hot, double* all) {
    std::vector<int64_t> f(s.fired.begin() + (size_t)l * s.n_ff, s.fired.begin() + (size_t)(l + 1) * s.n_ff);
    const int k = std::clamp((int)std::ceil(hot_fraction * s.n_ff - 1e-9), 0, s.n_ff);
    std::nth_element(f.begin(), f.begin() + k - (k > 0), f.end(), std::greater<int64_t>());
    *hot = 0;
    *all = 0;
    for (int i = 0; i < s.n_ff; i++) {
        if (i < k) *hot += (double)f[i];
        *all += (double)f[i];
    }
}

}  // namespace

FfnLayerSummary ffn_stats_layer(const FfnStats& s, int l, double hot_fraction) {
    if (l < 0 || l >= s.n_layers)
        throw Error("ffn_stats_layer: layer " + std::to_string(l) + " outside [0, " + std::to_string(s.n_layers) + ")");
    if (!(hot_fraction >= 0.0 && hot_fraction <= 1.0))
        throw Error("ffn_stats_layer: hot_fraction must lie in [0, 1], found " + std::to_string(hot_fraction));
    FfnLayerSummary r;
    double hot = 0, all = 0;
    layer_firings(s, l, hot_fraction, &hot, &all);
    r.n_tokens = s.n_tokens[l];
    const double pairs = (double)r.n_tokens * s.n_ff;
    r.sparsity = pairs > 0 ? 1.0 - all / pairs : 0.0;
    r.mean_active = r.n_tokens > 0 ? all / (double)r.n_tokens : 0.0;
    r.hot_share = all > 0 ? hot / all : 0.0;
    for (int i = 0; i < s.n_ff; i++) r.n_dead += s.fired[(size_t)l * s.n_ff + i] == 0;
    return r;
}

FfnLayerSummary ffn_stats_total(const FfnStats& s, double hot_fraction) {
    FfnLayerSummary r;
    double hot = 0, all = 0, pairs = 0;
    for (int l = 0; l < s.n_layers; l++) {
        const FfnLayerSummary x = ffn_stats_layer(s, l, hot_fraction);
        double h = 0, a = 0;
        layer_firings(s, l, hot_fraction, &h, &a);
        hot += h;
        all += a;
        pairs += (double)x.n_tokens * s.n_ff;
        r.n_dead += x.n_dead;
        r.mean_active += x.mean_active;
        r.n_tokens = std::max(r.n_tokens, x.n_tokens);
    }
    r.sparsity = pairs > 0 ? 1.0 - all / pairs : 0.0;
    r.hot_share = all > 0 ? hot / all : 0.0;
    return r;
}

FfnStats ffn_stats_measure(const Model& model, const std::vector<int32_t>& tokens, const FfnMeasureParams& p) {
    if (tokens.empty()) throw Error("ffn_stats_measure: no tokens");
    if (p.n_ctx < 1) throw Error("ffn_stats_measure: n_ctx must be >= 1, found " + std::to_string(p.n_ctx));
    const ModelInfo& info = model.info();
    FfnStats stats(info.n_layers, info.n_ff, p.threshold);
    SessionParams sp;
    sp.n_ctx = p.n_ctx;
    sp.n_batch = p.n_ctx;
    sp.n_threads = p.n_threads;
    Session session(model, sp);
    session.set_ffn_observer(
        [&stats](int layer, const float*, int, const float* h, int n, int n_ff) { stats.observe(layer, h, n, n_ff); });
    const Tokenizer& tok = model.tokenizer();
    const bool bos = tok.add_bos_default() && tok.bos() >= 0;
    const int64_t total = p.max_tokens > 0 ? std::min<int64_t>(p.max_tokens, (int64_t)tokens.size())
                                           : (int64_t)tokens.size();
    std::vector<int32_t> chunk;
    for (int64_t begin = 0; begin < total; begin += p.n_ctx) {
        const int64_t end = std::min<int64_t>(begin + p.n_ctx, total);
        chunk.assign(tokens.begin() + begin, tokens.begin() + end);
        if (bos) chunk[0] = tok.bos();
        session.reset();
        session.eval(chunk, false);
    }
    return stats;
}

}  // namespace ember
