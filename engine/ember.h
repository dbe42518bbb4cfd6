// ember's public API: what every app (cli, server, bench, perplexity, ...) uses. Apps hold no inference logic.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

namespace ember {

struct LlamaModel;  // models/llama.h
struct LlamaGpu;    // models/llama-gpu.h
struct Placement;   // engine/placement.h
struct ModelProfile;  // predictor/profile.h

// Element type of a KV cache (llama.cpp's --cache-type-k / --cache-type-v). F16 halves the cache and the bytes
// attention reads per token at long contexts, on the CPU and the GPU alike.
enum class KvType { KV_TYPE_F32, KV_TYPE_F16 };
// "f32" or "f16" (any case); anything else is an error naming `what` (a flag or field) and the value.
KvType kv_type_from_name(const std::string& name, const std::string& what);
const char* kv_type_name(KvType t);

struct ModelParams {
    std::string path;       // GGUF model file (or PowerInfer PWRI file)
    int n_gpu_layers = -1;  // -ngl N: dense layer offload of the last N layers (N > n_layers: also the output);
                            // 0 = CPU only; -1 = automatic placement (engine/placement.h): the whole model on the GPU
                            // when it fits, hot neurons in VRAM and cold ones in RAM when it does not (with a
                            // profile), CPU only without a GPU or in a build without CUDA
    std::string profile_path;  // --profile: profile GGUF from ember-profile (or a PowerInfer file with predictors);
                               // given, the FFN runs sparse: only predicted-active neurons are computed. "" = dense
    double vram_budget_gib = -1;  // --vram-budget: GiB of VRAM the placement may use; < 0 = free VRAM minus 512 MiB
    std::string placement_path;   // --placement FILE: load the placement from FILE when it exists, else plan and
                                  // save the plan there
    bool print_placement = false; // --print-placement: write the plan to stderr at load
    int n_ctx = 0;                // context per session the placement reserves KV cache for (0 = as Session: the
                                  // training context, at most 4096); a session may not ask for more
    int n_seq = 1;                // sessions the placement reserves KV cache and scratch for (ember-server's -np)
    KvType cache_type_k = KvType::KV_TYPE_F32;  // the GPU KV cache's key and value types the placement reserves
    KvType cache_type_v = KvType::KV_TYPE_F32;  // VRAM for; a session may not ask for wider ones
    double cpu_bandwidth_gbs = 0; // host memory bandwidth the planner assumes, GB/s (0 = measure at load)
    int gpu_prompt_batch = -1;    // prompts on a GPU placement in batches of 32 tokens (the plan reserves their device
                                  // scratch): 1 = always; 0 = never, one token at a time; -1 = always, except that a
                                  // plan with a profile and no -ngl gives them up when their scratch would take more
                                  // than 1/16 of the VRAM budget
};

// Hyper-parameters as read and validated from GGUF metadata.
struct ModelInfo {
    std::string arch;        // general.architecture
    std::string name;        // general.name
    int n_vocab = 0;
    int n_ctx_train = 0;     // <arch>.context_length
    int dim = 0;             // embedding length
    int n_layers = 0;
    int n_heads = 0;
    int n_kv_heads = 0;
    int head_dim = 0;        // dim / n_heads
    int kv_dim = 0;          // n_kv_heads * head_dim
    int n_ff = 0;
    int n_rot = 0;           // rotary dimensions per head
    bool rope_neox = false;  // NeoX rotation pairs (i, i + n_rot/2) instead of (2i, 2i + 1)
    float rope_freq_base = 10000.0f;
    float rope_freq_scale = 1.0f;
    float norm_eps = 1e-5f;
    std::string ffn_act;     // "silu" (SwiGLU) or "relu" (ReGLU, ReLU-fied models; key ember.ffn_activation)
    std::string weight_type; // most common weight type, for display ("F16", "Q4_0", ...)
    uint64_t n_params = 0;
    uint64_t weight_bytes = 0;            // all tensors
    uint64_t weight_bytes_per_token = 0;  // bytes of weights a dense decode step reads (all but the embedding table)
    uint64_t ffn_bytes_per_token = 0;     // of them, the FFN's gate, up and down matrices (all layers)
};

// What the sparse FFN did (Session::sparse_stats). Decode steps (one token per eval) run the sparse operators and
// are counted with the weight bytes they read; tokens evaluated in batches (prompts) count only in the neuron
// counters (a batch reads the rows its tokens predicted, 32 tokens at a time; where the predictor marks half the
// neurons or more, the CPU computes it densely and applies the mask).
struct SparseFfnStats {
    uint64_t tokens = 0;             // tokens through the FFN (decode and batched), each over every layer
    uint64_t neurons = 0;            // tokens * n_layers * n_ff: what a dense FFN computes
    uint64_t predicted = 0;          // neurons the predictors marked active (their gate rows are read)
    uint64_t fired = 0;              // of those, non-zero after the activation (their up and down rows are read)
    uint64_t decode_tokens = 0;      // tokens evaluated one at a time through the sparse operators
    uint64_t decode_weight_bytes = 0;  // weight bytes those steps read from host memory: all but the FFN,
                                       // predictors, active rows (with a GPU: only what the CPU side reads)
    uint64_t decode_gpu_weight_bytes = 0;  // with a GPU: weight bytes those steps read from VRAM
    // With a GPU, per layer (empty when no layer splits its FFN): of the bytes above, those of the layer's split FFN
    // halves, the cold rows the host read and the hot rows the GPU read, which run at the same time
    // (engine/decode-bound.h).
    std::vector<uint64_t> decode_split_host_bytes, decode_split_gpu_bytes;
    SparseFfnStats& operator+=(const SparseFfnStats& o) {
        tokens += o.tokens, neurons += o.neurons, predicted += o.predicted, fired += o.fired;
        decode_tokens += o.decode_tokens, decode_weight_bytes += o.decode_weight_bytes;
        decode_gpu_weight_bytes += o.decode_gpu_weight_bytes;
        add_per_layer(decode_split_host_bytes, o.decode_split_host_bytes);
        add_per_layer(decode_split_gpu_bytes, o.decode_split_gpu_bytes);
        return *this;
    }
    double predicted_share() const { return neurons ? (double)predicted / neurons : 0.0; }
    double bytes_per_decode_token() const { return decode_tokens ? (double)decode_weight_bytes / decode_tokens : 0.0; }
    double gpu_bytes_per_decode_token() const {
        return decode_tokens ? (double)decode_gpu_weight_bytes / decode_tokens : 0.0;
    }

private:
    static void add_per_layer(std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
        if (a.size() < b.size()) a.resize(b.size(), 0);
        for (size_t i = 0; i < b.size(); i++) a[i] += b[i];
    }
};

class Model {
public:
    // Maps the file, validates every tensor's name, dtype and shape, binds the tokenizer.
    // Throws ember::Error naming the file, tensor or key on any problem.
    static std::unique_ptr<Model> load(const ModelParams& params);
    ~Model();

    const ModelInfo& info() const { return info_; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }
    const GGUFFile& file() const { return *file_; }
    std::string chat_template() const;  // tokenizer.chat_template, "" when absent
    const LlamaModel& llama() const { return *llama_; }
    // Where the layers run: "CPU", or "CUDA <mode>" with mode gpu, hybrid or layers (engine/placement.h).
    std::string backend() const;
    // The placement in use (mode CPU without a GPU).
    const Placement& placement() const { return *placement_; }
    // The GPU's share of the model (null when everything runs on the CPU); models/llama-gpu.h.
    const std::shared_ptr<LlamaGpu>& gpu() const { return gpu_; }
    int planned_n_ctx() const { return planned_n_ctx_; }
    KvType planned_cache_type_k() const { return planned_cache_type_k_; }
    KvType planned_cache_type_v() const { return planned_cache_type_v_; }
    // True when a profile was given and some layer's FFN runs through its predictor and the sparse operators (not
    // when the placement runs every FFN dense in VRAM: engine/placement.h).
    bool sparse() const;
    // Bytes of all layers' predictors in their run type (0 when dense).
    uint64_t predictor_bytes() const;

private:
    Model() = default;
    static Placement plan_placement(Model& model, const ModelParams& params, const ModelProfile& profile);
    ModelInfo info_;
    std::unique_ptr<GGUFFile> file_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<LlamaModel> llama_;
    std::unique_ptr<Placement> placement_;
    std::shared_ptr<LlamaGpu> gpu_;
    int planned_n_ctx_ = 0;
    KvType planned_cache_type_k_ = KvType::KV_TYPE_F32;
    KvType planned_cache_type_v_ = KvType::KV_TYPE_F32;
};

struct SessionParams {
    int n_ctx = 0;        // context length in tokens; 0 = the model's training context, at most 4096
    int n_threads = 0;    // 0 = number of physical cores (hardware threads / 2 where SMT), at least 1
    int n_batch = 512;    // tokens per prompt-processing step
    bool cpu_strict = false;  // pin each worker thread to its own physical core (Linux; the calling thread stays
                              // free); off: the OS places them
    KvType cache_type_k = KvType::KV_TYPE_F32;
    KvType cache_type_v = KvType::KV_TYPE_F32;
};

struct SessionState;   // engine/session-state.h
enum class LlamaLogits;  // models/llama.h

// A record of where one decode step spent its time (Session::set_trace): spans on the host clock, in ms from the
// step's start; GPU spans come from CUDA events placed on the stream around the work.
struct DecodeTimeline {
    struct Span {
        int layer = -1;        // -1: not a layer's (embedding, output)
        std::string what;      // "attention", "ffn hot", "ffn dense", "ffn cold", "wait", "output"
        bool gpu = false;      // which side ran it
        double begin_ms = 0, end_ms = 0;
    };
    std::vector<Span> spans;
    double total_ms = 0;       // the step, host clock, until its logits are on the host
    double gpu_busy_ms = 0;    // union of GPU spans
    double cpu_busy_ms = 0;    // union of CPU spans (work, not waiting)
};

struct BatchEvalItem;  // engine/batch-eval.h

// Called during eval for every layer with the FFN's input x_in (the normed residual, (n_tokens, dim) row-major) and
// its hidden activations h = act(gate) * up, (n_tokens, n_ff) row-major, before the down projection. For ReLU
// models a zero in h is a neuron that did not fire; the offline profiler learns to predict h != 0 from x_in. An eval
// may show a layer its tokens in several calls (batches: the GPU's are 32 tokens), always in token order.
using FfnObserver =
    std::function<void(int layer, const float* x_in, int dim, const float* h, int n_tokens, int n_ff)>;

// One sequence's KV cache and scratch. Not thread-safe; several sessions may share one Model.
class Session {
public:
    Session(const Model& model, const SessionParams& params);
    ~Session();

    // Runs `tokens` at positions n_past() .. n_past()+n-1 (in batches of n_batch), appending to the KV cache.
    // Afterwards logits(i) holds the logits of tokens[i] for every i when all_logits, else only of the last.
    // Throws ember::Error if the context would overflow or a token id is out of range.
    void eval(const std::vector<int32_t>& tokens, bool all_logits = false);
    // n_vocab floats: logits of the i-th token of the last eval (-1: the last one).
    const float* logits(int i = -1) const;

    int n_past() const;
    int n_ctx() const;
    int n_threads() const;
    void truncate(int n_past);  // forget positions >= n_past (e.g. to re-run from a shared prefix)
    void reset() { truncate(0); }
    // Installs (or, with an empty function, removes) the observer of FFN activations. On the GPU its evals then
    // run in batches, the GPU's activations copied back per layer; ember::Error on a placement with split layers.
    void set_ffn_observer(FfnObserver observer);
    // Counters of the sparse FFN since the session was made or reset_sparse_stats (all zero for a dense model).
    const SparseFfnStats& sparse_stats() const;
    void reset_sparse_stats();

    // True when the model's placement puts work on the GPU (this session then has device state).
    bool on_gpu() const;
    // GPU sessions: record the next decode steps' timeline (CUDA events and host clock per layer and side); the
    // last one is returned by timeline() (null on the CPU).
    void set_trace(bool on);
    const DecodeTimeline* timeline() const;

private:
    friend void sessions_eval(const std::vector<BatchEvalItem>& items);
    void forward(const int32_t* tokens, int n, LlamaLogits which);
    const Model& model_;
    std::unique_ptr<SessionState> state_;
};

std::string version_string();  // "ember 0.1.0 (cpu: avx2, prefetch to L1, blas: openblas, cuda: built)"

}  // namespace ember
