// The offline profiler behind ember-profile (DESIGN.md, Pipeline): runs the dense model over a calibration corpus,
// counts how often each FFN neuron fires, records (FFN input, fired) samples per layer and trains one activation
// predictor per layer on them (predictor/train.h), by default at the rank that minimises the bytes a decode token
// reads in that layer. The dense pass runs where the model's placement puts it (on the GPU, the FFN inputs and
// activations come back per layer and batch); the predictors train on the GPU with train.gpu. The result is a
// ModelProfile for profile_write.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ember.h"
#include "predictor/profile.h"
#include "predictor/train.h"

namespace ember {

// Calibration tokens by default: where predictors train on the CPU, and at most where they train on the GPU
// (profile_default_tokens).
constexpr int64_t kProfileTokensCpu = 4096;
constexpr int64_t kProfileTokensGpu = 16384;

struct ProfileParams {
    int n_ctx = 256;              // tokens per chunk; every chunk starts from an empty KV cache (first token -> BOS)
    int64_t max_tokens = kProfileTokensCpu;   // profile at most this many corpus tokens (0 = all)
    int64_t max_samples = kProfileTokensCpu;  // (x_in, fired) samples kept per layer for training, reservoir-sampled
                                              // (>= 2)
    int n_threads = 0;            // 0 = physical cores
    PredictorTrainArgs train;     // epochs, recall_target, weight_type (the profile's), seed, ...; rank if fixed
    bool auto_rank = true;        // per layer the rank of fewest expected bytes per token (predictor_train_auto);
                                  // false: train.rank for every layer
    std::vector<int> ranks;       // auto_rank's candidates; empty = predictor_rank_ladder(dim, n_ff)
    bool verbose = false;         // progress on stderr
};

// What profile_model measured per layer besides the profile itself.
struct ProfileLayerReport {
    PredictorMetrics holdout;                // the chosen predictor's, on its held-out split (packed weights)
    size_t predictor_bytes = 0;              // packed predictor, read per token
    double ffn_bytes = 0.0;                  // the layer's gate, up and down weights in the model's types
    double expected_bytes = 0.0;             // per token: predictor + predicted-active share of ffn_bytes
    std::vector<PredictorRankTrial> trials;  // ranks tried, ascending (one when the rank is fixed)
    std::string stop_reason;                 // why auto_rank tried no larger rank ("" when fixed)
    double seconds = 0.0;                    // training time, all trials
};

// Profiles `model` over `tokens`. Frequencies count every profiled token (neuron fires when h != 0, exact ReLU
// zeros); the predictors train on the sampled tokens. Fills *report (one entry per layer) when given.
// Throws ember::Error on empty tokens or bad parameters.
ModelProfile profile_model(const Model& model, const std::vector<int32_t>& tokens, const ProfileParams& p,
                           std::vector<ProfileLayerReport>* report = nullptr);

// Host bytes the training samples of one calibration token take, all layers together: each layer keeps the token's
// FFN input (dim floats) and its fired flags (n_ff bytes).
uint64_t profile_sample_bytes_per_token(const ModelInfo& info);

// The calibration tokens ember-profile takes when --tokens is not given. Predictors trained on more tokens skip more
// neurons at the same recall (docs/benchmarks.md: ember-synth's 7B skipped 62-64 % of its neurons after 4096 tokens,
// 78-79 % after 16384), and cost training time in proportion: 4096 when they train on the CPU; on the GPU (beside a
// model that fits there whole: ember-profile's call) as many of 16384 as keep the samples within 40 % of
// host_memory, never fewer than 4096 (4096 when host_memory is 0: unknown).
int64_t profile_default_tokens(bool train_on_gpu, uint64_t sample_bytes_per_token, uint64_t host_memory);

// The table ember-profile prints at the end: per layer rank, threshold, recall, precision, predicted and true
// sparsity (held-out), predictor KiB and expected KiB read per token against the dense FFN, then the totals.
std::string profile_table(const ModelProfile& prof, const std::vector<ProfileLayerReport>& report);

}  // namespace ember
