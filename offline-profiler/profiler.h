// The offline profiler behind ember-profile (DESIGN.md, Pipeline): runs the dense model over a calibration corpus,
// counts how often each FFN neuron fires, records (FFN input, fired) samples per layer and trains one activation
// predictor per layer on them (predictor/train.h). The result is a ModelProfile for profile_write.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/ember.h"
#include "predictor/profile.h"
#include "predictor/train.h"

namespace ember {

struct ProfileParams {
    int n_ctx = 256;              // tokens per chunk; every chunk starts from an empty KV cache (first token -> BOS)
    int64_t max_tokens = 4096;    // profile at most this many corpus tokens (0 = all)
    int64_t max_samples = 4096;   // (x_in, fired) samples kept per layer for training, reservoir-sampled (>= 2)
    int n_threads = 0;            // 0 = physical cores
    PredictorTrainArgs train;     // rank, epochs, recall_target, seed, ... (holdout metrics go into the profile)
    bool verbose = false;         // progress on stderr
};

// Profiles `model` over `tokens`. Frequencies count every profiled token (neuron fires when h != 0, exact ReLU
// zeros); the predictors train on the sampled tokens. Throws ember::Error on empty tokens or bad parameters.
ModelProfile profile_model(const Model& model, const std::vector<int32_t>& tokens, const ProfileParams& p);

}  // namespace ember
