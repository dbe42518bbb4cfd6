// The placement planner: which weights live in VRAM and which stay in host RAM, under a VRAM budget.
// A decode step reads every dense weight (attention, output) once and, per FFN layer, only the rows of the neurons
// the predictor marks active. The planner puts on the GPU what saves the most host-memory reads per VRAM byte, and
// splits each FFN layer into hot neurons (in VRAM, run by the GPU) and cold ones (host RAM, run by the CPU workers at
// the same time) until the hot neurons' GPU time meets the cold ones' CPU time: attention and predictors run before
// each FFN's two sides, so only the neurons overlap. docs/architecture.md explains the algorithm.
// Pure planning: no CUDA here. The executor (models/llama-gpu.h) builds what a Placement says.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ember {

// How a run uses the GPU.
enum class PlacementMode {
    PLACEMENT_CPU,     // nothing on the GPU (no GPU, a CPU-only build, or a budget too small for anything)
    PLACEMENT_GPU,     // the whole model in VRAM
    PLACEMENT_HYBRID,  // dense tensors and hot neurons in VRAM, cold neurons in host RAM (needs a profile)
    PLACEMENT_LAYERS,  // dense layer offload (-ngl N, or a model without a profile that does not fit): the last
                       // layers whole on the GPU, the rest whole on the CPU
};
const char* placement_mode_name(PlacementMode m);  // "cpu", "gpu", "hybrid", "layers"

// Where one layer's parts run.
struct LayerPlacement {
    bool attn_gpu = false;       // attention norm, wq/wk/wv/wo and this layer's KV cache in VRAM; else host
    bool ffn_gpu_dense = false;  // the whole FFN (norm, gate, up, down) in VRAM, run dense (no predictor)
    bool predictor_gpu = false;  // FFN norm and predictor in VRAM: the layer's FFN is split into hot (VRAM) and
                                 // cold (host) neurons, the predictor runs on the GPU and the CPU gets its scores
    std::vector<int32_t> hot;    // with predictor_gpu: the neurons whose gate row, up row and down column are in
                                 // VRAM, ascending, each in [0, n_ff); the others are cold. Empty otherwise.
    // With neither ffn_gpu_dense nor predictor_gpu, the FFN runs on the CPU (sparse with a profile, else dense).
};

// What the planner knows of the model: sizes in bytes as stored (and as copied to VRAM), per layer.
struct PlacementModel {
    std::string model_name;          // for the placement file's check
    int n_layers = 0;
    int n_ff = 0;
    int dim = 0;
    int n_vocab = 0;
    uint64_t attn_bytes = 0;         // one layer's wq + wk + wv + wo + attention norm
    uint64_t kv_bytes_per_layer = 0; // one layer's K and V caches for the planned context, in their types
    uint64_t ffn_norm_bytes = 0;     // one layer's FFN norm weights
    uint64_t ffn_dense_bytes = 0;    // one layer's w_gate + w_up + w_down
    uint64_t neuron_bytes = 0;       // one neuron's gate row + up row + down column (= ffn_dense_bytes / n_ff)
    uint64_t gate_row_bytes = 0;     // of which the gate row (read whenever the neuron is predicted active)
    uint64_t predictor_bytes = 0;    // one layer's predictor in its run type (0 without a profile)
    uint64_t output_bytes = 0;       // output norm + output matrix
    uint64_t embd_row_bytes = 0;     // one embedding row (host; read once per token)
    uint64_t gpu_scratch_bytes = 0;  // activations, attention scratch, cuBLAS workspace, for one session
    bool has_profile = false;
    // (n_layers, n_ff) firing frequency of each neuron in [0, 1] from the profile (empty rows = unknown: every
    // neuron then counts at the layer's mean, 1 - predicted sparsity, or 1 without a profile).
    std::vector<std::vector<float>> freq;
    std::vector<float> predicted_share;  // (n_layers) share of neurons the predictor marks active (profile)
};

struct PlacementRequest {
    uint64_t vram_budget = 0;   // bytes the plan may use in VRAM (0: CPU only)
    double cpu_bandwidth = 0;   // host memory read bandwidth, bytes/s (> 0)
    double gpu_bandwidth = 0;   // VRAM read bandwidth, bytes/s (> 0)
    int n_gpu_layers = -1;      // >= 0: -ngl N dense layer offload, the last N layers (N > n_layers: also the
                                // output); -1: automatic (gpu if everything fits, else hybrid with a profile, else
                                // layers with as many layers as fit)
};

struct Placement {
    PlacementMode mode = PlacementMode::PLACEMENT_CPU;
    std::vector<LayerPlacement> layers;  // (n_layers)
    bool output_gpu = false;             // output norm and matrix in VRAM (the logits come back over PCIe)
    // VRAM the plan uses, by part; vram_total is their sum and never exceeds the request's budget, except in
    // LAYERS mode from an explicit -ngl (reported, and refused by the executor when VRAM is short).
    uint64_t vram_weights = 0;     // dense tensors, predictors and hot neurons
    uint64_t vram_kv = 0;
    uint64_t vram_scratch = 0;
    uint64_t vram_total = 0;
    uint64_t vram_budget = 0;
    // Expected weight bytes one decode step reads on each side (neurons counted at their frequency), and the
    // decode speeds those bytes bound at the request's bandwidths (engine/decode-bound.h): 1 / max(cpu / cpu_bw,
    // gpu / gpu_bw) with the sides always reading at the same time, and with the parts in the order the layers need
    // them (only a split FFN's hot and cold halves overlap).
    double cpu_bytes_per_token = 0;
    double gpu_bytes_per_token = 0;
    double bound_tokens_per_s = 0;
    double layer_order_tokens_per_s = 0;
    double cpu_bandwidth = 0;      // the request's bandwidths (bytes/s) the bound was computed with
    double gpu_bandwidth = 0;
    int n_hot_total() const;       // hot neurons over all layers
};

// Plans under req for m. Throws ember::Error naming the field when the request is invalid (bandwidths <= 0,
// n_gpu_layers < -1) or m is inconsistent (freq rows of the wrong length, values outside [0, 1]).
// Deterministic: the same inputs give the same plan. Everything in VRAM (mode gpu) runs each FFN sparse, through its
// predictor with every neuron hot, when there is a profile and the FFN's weights take a byte or more each; FFNs of
// fewer bytes a weight (Q4_0) run dense there, which decodes faster.
Placement placement_plan(const PlacementModel& m, const PlacementRequest& req);

// Whether a model with a profile runs some layer's FFN through its predictor under p: a layer split between GPU and
// CPU, or a layer whose FFN stays on the CPU (no layers: everything on the CPU); false when every FFN is dense in
// VRAM.
bool placement_ffn_sparse(const Placement& p);

// Recomputes the accounting fields (vram_*, *_bytes_per_token, bound) of p for m and req from its layer decisions:
// used after loading a placement file, and by the planner itself.
void placement_account(const PlacementModel& m, const PlacementRequest& req, Placement& p);

// Human-readable plan (--print-placement): mode, VRAM by part against the budget, per layer where attention and
// FFN run and how many neurons are hot with the expected share of the layer's active-neuron bytes they serve,
// bytes per token on each side and the bound.
std::string placement_describe(const PlacementModel& m, const Placement& p);

// Saves p as JSON (atomically: PATH.tmp, then rename) with the model's name and shape, and reads it back. Reading
// throws ember::Error naming the file and the field when the JSON is malformed, the shape does not match m
// (layers, n_ff), a neuron index is out of range or not ascending, or a field has the wrong type; it then
// recomputes the accounting for m and req.
void placement_save(const Placement& p, const PlacementModel& m, const std::string& path);
Placement placement_load(const std::string& path, const PlacementModel& m, const PlacementRequest& req);

}  // namespace ember
