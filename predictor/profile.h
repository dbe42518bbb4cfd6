// The profile file: the sidecar GGUF the offline profiler writes and the engine reads at load. It holds, per layer,
// the neuron firing frequencies and the trained activation predictor (predictor/predictor.h).
//
// Layout (general.architecture = "ember-profile"):
//   ember.profile.version (u32, 1 or 2), .model_name (string), .n_layers / .dim / .n_ff (u32), .n_tokens (u64)
//   ember.profile.predictor_hidden (string)   "relu" or "linear" (predictor.h), every layer's; version 2 needs it,
//                                             and only version 2 may say "linear" (version 1 files are all ReLU)
//   ember.profile.threshold / .sparsity / .recall / .precision   f32 arrays, one entry per layer
//   powerinfer.sparse_threshold (f32)   layer 0's threshold, the single global key PowerInfer reads
//   blk.N.ffn_freq   F32      ne = {n_ff}           (absent when the profile has no frequencies)
//   blk.N.fc1.weight F32/F16/Q8_0  ne = {dim, rank} PowerInfer's predictor tensor names and ggml layout; every
//   blk.N.fc2.weight F32/F16/Q8_0  ne = {rank, n_ff} layer's fc1 and fc2 in one type, the type they run in
// The writer gives ReLU predictors version 1 and linear ones version 2, so that a reader that knows only version 1
// refuses a linear profile rather than running it with a ReLU.
// profile_read also takes the predictors out of a PowerInfer model file (magic "PWRI", or any GGUF holding
// blk.0.fc1.weight): threshold from powerinfer.sparse_threshold, no frequencies, no measurements.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/ember.h"
#include "engine/gguf.h"
#include "kernels-cpu/dtype.h"
#include "predictor/predictor.h"

namespace ember {

struct LayerProfile {
    std::vector<float> freq;  // (n_ff) share of tokens on which each neuron fired, in [0, 1]; empty when unknown
    Predictor predictor;      // dim, rank, hidden, n_ff, threshold, fc1 (rank, dim), fc2 (n_ff, rank)
    // Measured on held-out tokens, each in [0, 1]; NaN when not measured (predictors read from PowerInfer files).
    float sparsity = 0.0f;    // share of neurons the predictor skips
    float recall = 0.0f;      // share of truly active neurons it predicts active
    float precision = 0.0f;   // share of predicted-active neurons that are truly active
};

struct ModelProfile {
    std::string model_name;  // general.name of the profiled model
    int n_layers = 0;
    int dim = 0;
    int n_ff = 0;
    uint64_t n_tokens = 0;   // tokens profiled (0 when unknown)
    DType weight_type = DType::DTYPE_F32;  // predictor weights' type in the file, which is also the type they run in
    std::vector<LayerProfile> layers;  // n_layers entries
};

// Validates p (shapes, finite values) and writes it to path atomically (PATH.tmp, then rename). The predictor
// weights are stored in p.weight_type: F32, F16 or Q8_0 (Q8_0: dim and every rank multiples of 32); frequencies
// are always F32. The second form writes p as if its weight_type were `weight_type`.
void profile_write(const ModelProfile& p, const std::string& path);
void profile_write(const ModelProfile& p, const std::string& path, DType weight_type);

// Reads and validates an ember profile or the predictors of a PowerInfer file; weight_type is the type of
// blk.0.fc1.weight, which every fc1 and fc2 must share. Throws ember::Error naming the file, layer, tensor or key,
// with expected against found.
ModelProfile profile_read(const GGUFFile& f);
ModelProfile profile_read(const std::string& path);

// Throws ember::Error when the profile's n_layers, dim or n_ff differ from the model's.
void profile_check_model(const ModelProfile& p, const ModelInfo& model);

}  // namespace ember
