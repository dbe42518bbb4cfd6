// FFN activation statistics: per layer, how sparse the hidden activations h = act(gate) * up are and how much of
// the firing the hottest neurons account for (PowerInfer, SOSP'24, section 2: in ReLU models a small set of hot
// neurons fires for most tokens). Fed by Session::set_ffn_observer; used by ember-sparsity and the profiler.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/ember.h"

namespace ember {

// Firing counts of every FFN neuron. Neuron i of layer l fires for a token when |h[i]| > threshold; with the
// default threshold 0 that is h != 0, the exact zeros a ReLU leaves.
struct FfnStats {
    int n_layers = 0;
    int n_ff = 0;
    float threshold = 0.0f;
    std::vector<int64_t> n_tokens;  // (n_layers): tokens observed per layer
    std::vector<int64_t> fired;     // (n_layers, n_ff): tokens for which neuron i of layer l fired

    FfnStats(int n_layers, int n_ff, float threshold = 0.0f);
    // One observer call: h is (n_tokens, n_ff) row-major. Throws Error on a layer or width that does not fit.
    void observe(int layer, const float* h, int n_tokens, int n_ff);
};

struct FfnLayerSummary {
    double sparsity = 0;     // fraction of (token, neuron) pairs that did not fire
    double mean_active = 0;  // neurons that fired per token, on average
    double hot_share = 0;    // fraction of all firings owed to the hot_fraction most frequently firing neurons
    int n_dead = 0;          // neurons that never fired
    int64_t n_tokens = 0;
};

// One layer. The hot set is the ceil(hot_fraction * n_ff) neurons that fired most often; 0 firings give
// hot_share 0.
FfnLayerSummary ffn_stats_layer(const FfnStats& s, int layer, double hot_fraction = 0.2);
// All layers pooled: sparsity over every (token, layer, neuron); hot_share is the firings of each layer's own hot
// set over all firings; n_dead and mean_active are sums over layers.
FfnLayerSummary ffn_stats_total(const FfnStats& s, double hot_fraction = 0.2);

struct FfnMeasureParams {
    int n_ctx = 256;         // tokens per chunk; every chunk starts from an empty KV cache
    int64_t max_tokens = 0;  // stop after this many tokens (0 = all)
    int n_threads = 0;       // 0 = physical cores
    float threshold = 0.0f;  // see FfnStats
};

// Runs `model` over `tokens` in chunks of n_ctx and counts firings. As ember-perplexity does, the first token of
// every chunk is replaced by BOS when the vocabulary adds one. Throws Error when tokens is empty or n_ctx < 1.
FfnStats ffn_stats_measure(const Model& model, const std::vector<int32_t>& tokens, const FfnMeasureParams& p);

}  // namespace ember
