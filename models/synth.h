// ember-synth: synthetic llama-architecture models of any shape whose dense forward pass produces the activation
// statistics of a ReLU-fied model (DESIGN.md, "Test models"):
//   1. per layer, neuron i fires with a target probability p_i drawn from a power law solved so that
//      mean(p) = 1 - sparsity and the hottest 20% of neurons take hot_share of all firings;
//   2. which neurons fire is a low-rank function of the FFN input: W_gate = A·B + E + a·u^T
//      (A: n_ff x r0, B: r0 x dim, E small full-rank noise, u a direction every token carries).
// The statistics live in the weights alone (llama has no biases): every token embedding carries c·u, the
// attention and FFN outputs are kept orthogonal to u, so the FFN input of every layer has a stable projection on
// u and a_i sets neuron i's threshold. a_i is calibrated per layer on a few hundred tokens pushed through the
// layers already built, with the engine's own kernels on the stored (quantized) weights.
// The file is a standard GGUF (arch llama, llama.cpp's tensor names and keys) plus ember.ffn_activation = relu
// and the targets in ember.synth.*.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels-cpu/dtype.h"
#include "predictor/predictor.h"

namespace ember {

struct SynthParams {
    int dim = 4096;          // embedding length
    int n_layers = 32;
    int n_ff = 11008;        // FFN neurons per layer
    int n_heads = 32;
    int n_kv_heads = 32;     // grouped-query attention when < n_heads
    int n_ctx = 4096;        // llama.context_length written to the file
    DType type = DType::DTYPE_F16;  // every matrix; norm weights are F32
    float sparsity = 0.9f;   // target share of FFN neurons that do NOT fire for a token, every layer
    float hot_share = 0.8f;  // target share of all firings taken by the hottest 20% of neurons
    int gate_rank = 0;       // r0 of the gate's low-rank part; 0 = dim / 16 (at least 8, at most dim / 2)
    float gate_noise = 0.05f; // share of a gate row's squared norm in the full-rank noise E
    int calib_tokens = 256;  // calibration tokens (sequences of up to 128) pushed through the layers
    uint64_t seed = 1;       // same seed, parameters and build: the same bytes, for any n_threads
    std::string vocab_from;  // GGUF whose tokenizer.* keys (and vocabulary size) the model takes; required
    int n_threads = 0;       // 0 = all hardware threads
    // Also return each layer's construction predictor (SynthReport::predictors): the gate's rank-(r0 + 1) part
    // written as a predictor. Costs (r0 + 1) (dim + n_ff) floats of memory per layer (twice that with a ReLU).
    bool construction_predictors = false;
    // Their hidden activation: linear (rank r0 + 1) or ReLU (the same rule in +/- pairs, twice the rank).
    PredictorHidden predictor_hidden = PredictorHidden::PREDICTOR_HIDDEN_LINEAR;
};

// What calibration measured in one layer, on the calibration tokens (in-sample).
struct SynthLayerStats {
    double sparsity = 0;     // share of (token, neuron) pairs with h == 0
    double hot_share = 0;    // share of firings in the 20% of neurons that fired most
    // Property 2: firing predicted by the gate's rank-(r0 + 1) part alone (A·B + a·u^T, without E).
    double lowrank_recall = 0;       // share of firings predicted
    double lowrank_recall_cold = 0;  // the same among neurons outside the hottest 20% (by target)
    double lowrank_precision = 0;    // share of predictions that fired
    double u_proj = 0;       // mean projection of the normed FFN input on u (its norm is sqrt(dim))
    double residual_rms = 0; // rms of the residual stream after the layer
};

struct SynthReport {
    std::vector<SynthLayerStats> layers;
    // With construction_predictors, per layer: scores = A (B x) + a (u . x), the firing rule without the noise E,
    // as fc2 · (fc1 · x), rank r0 + 1, or with predictor_hidden ReLU as fc2 · relu(fc1 · x) with hidden units in
    // +/- pairs (relu(h) - relu(-h) = h), rank 2 (r0 + 1); either rounded up to a multiple of 32 with zero units.
    // threshold: the largest reaching recall 0.99 on the calibration tokens.
    std::vector<Predictor> predictors;
    std::vector<float> predictor_recall;     // on the calibration tokens at that threshold
    std::vector<float> predictor_precision;
    std::vector<float> predictor_sparsity;   // share of neurons predicted inactive
    std::vector<std::vector<float>> neuron_freq;  // (n_layers, n_ff) each neuron's target firing probability
    int n_vocab = 0;
    int gate_rank = 0;       // r0 used
    uint64_t file_bytes = 0;
};

// One line of progress (no newline); may be empty.
using SynthLog = std::function<void(const std::string& line)>;

// The construction predictors of report (made with construction_predictors) as a profile for the model p
// describes: Q8_0 weights, the calibration-token measurements, each neuron's target firing probability as its
// frequency (what the placement planner ranks neurons by).
struct ModelProfile;
ModelProfile synth_construction_profile(const SynthParams& p, const SynthReport& report);

// Sets the shape of a Llama-2 size: "7b" (dim 4096, 32 layers, n_ff 11008, 32 heads), "13b" (5120, 40, 13824,
// 40 heads), "70b" (8192, 80, 28672, 64 heads, 8 KV heads). Throws ember::Error on another name.
void synth_apply_preset(const std::string& name, SynthParams& p);

// Throws ember::Error naming the parameter, its value and the accepted range (including a hot_share that the
// sparsity makes unreachable).
void synth_validate(const SynthParams& p);

// The number of neurons in "the hottest 20%" of n: round(0.2 n), at least 1.
int synth_hot_count(int n_ff);

// Target firing probabilities of n_ff neurons, hottest first: p_j = min(p_max, k * ((j + 0.5) / n_ff)^-gamma)
// with k and gamma solved so that mean(p) = 1 - sparsity and the first synth_hot_count(n_ff) hold hot_share of
// sum(p). Throws ember::Error when no such law exists.
std::vector<double> synth_firing_targets(int n_ff, double sparsity, double hot_share);

// The shipped vocabulary (models/ggml-vocab-llama-spm.gguf), looked for in the build tree beside the executable
// (<exe dir>/../../models, <exe dir>/../models), an install tree (<exe dir>/../share/ember), then
// <source_dir>/models. Throws ember::Error listing every path tried.
std::string synth_default_vocab(const std::string& exe_path, const std::string& source_dir);

// Builds and writes the model to `path` (atomically). Memory: about two layers' weights (one is written while
// the next is built).
SynthReport synth_write(const SynthParams& p, const std::string& path, const SynthLog& log = {});

}  // namespace ember
