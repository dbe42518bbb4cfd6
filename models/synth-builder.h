// The weights of a synthetic ReLU model (models/synth.h), generated in file order: the embedding and output
// tables row by row from seeded streams, each layer whole (quantized, in memory) when its first tensor is asked
// for, after which the calibration tokens are pushed through it.
#pragma once
#include <array>
#include <cstdint>
#include <future>
#include <vector>

#include "kernels-cpu/thread-pool.h"
#include "models/synth.h"

namespace ember {

// The generated matrices of one layer, in llama.cpp's names.
enum class SynthTensor : int {
    SYNTH_ATTN_Q = 0,    // attn_q.weight      (n_heads * head_dim, dim)
    SYNTH_ATTN_K,        // attn_k.weight      (kv_dim, dim)
    SYNTH_ATTN_V,        // attn_v.weight      (kv_dim, dim)
    SYNTH_ATTN_OUTPUT,   // attn_output.weight (dim, n_heads * head_dim)
    SYNTH_FFN_GATE,      // ffn_gate.weight    (n_ff, dim), row i = neuron i
    SYNTH_FFN_UP,        // ffn_up.weight      (n_ff, dim)
    SYNTH_FFN_DOWN,      // ffn_down.weight    (dim, n_ff)
    SYNTH_COUNT,
};

class SynthBuilder {
public:
    // p must have passed synth_validate. bos: the BOS id that starts each calibration sequence (-1: none).
    SynthBuilder(const SynthParams& p, int n_vocab, int bos, ThreadPool& pool, SynthLog log);
    ~SynthBuilder();
    SynthBuilder(const SynthBuilder&) = delete;
    SynthBuilder& operator=(const SynthBuilder&) = delete;

    int gate_rank() const { return r0_; }
    void fill_token_embd(uint8_t* dst);  // (n_vocab, dim) in p.type
    void fill_output(uint8_t* dst);      // (n_vocab, dim) in p.type
    // The bytes of layer l's tensor t. Builds layers up to l first (layer l + 1 then starts in the background);
    // layers must be asked for in order. fill_token_embd starts layer 0 in the background.
    void fill_layer(int l, SynthTensor t, uint8_t* dst);
    const std::vector<SynthLayerStats>& stats() const { return stats_; }
    // With SynthParams::construction_predictors: the construction predictor of each layer built so far, and its
    // calibration-token recall, precision and predicted sparsity (see SynthReport).
    SynthReport& predictors() { return predictors_; }

private:
    struct Stream;
    Stream stream(uint64_t tensor, uint64_t row) const;
    void embedding_row(int64_t token, float* out) const;  // float row of token_embd before storage rounding
    // A (n_rows, n_cols) matrix of uniform noise with standard deviation sd, stored in p.type into out.
    void random_matrix(uint64_t id, int64_t n_rows, int64_t n_cols, float sd, std::vector<uint8_t>& out);
    // The same with the u-component of every column removed (outputs orthogonal to u), via the float scratch.
    void random_matrix_orth_u(uint64_t id, int64_t n_rows, int64_t n_cols, float sd, std::vector<uint8_t>& out);
    void quantize_rows(const float* w, int64_t n_rows, int64_t n_cols, std::vector<uint8_t>& out);
    // y (n_tokens, n_rows) = x (n_tokens, n_cols) * w^T, w of type wt; the same floats for any thread count.
    void gemm(DType wt, const void* w, const float* x, float* y, int64_t n_tokens, int64_t n_rows, int64_t n_cols);
    // y (N, n_rows) = x (N, n_cols) * w^T over the calibration tokens, w in p.type.
    void linear(const std::vector<uint8_t>& w, const float* x, float* y, int64_t n_rows, int64_t n_cols);
    void build_layer(int l);  // into slots_[l % 2]; appends to stats_
    void start_build(int l);  // build_layer(l) on a background thread (it uses the pool)
    void wait_build();        // waits for it; rethrows its error
    void build_gate(int l, const float* xn, float* gate, SynthLayerStats& st);
    void record_predictor(int l, const std::vector<float>& b, const std::vector<float>& a,
                          const std::vector<float>& a_shift, const std::vector<float>& r, const std::vector<double>& s,
                          const float* gate);

    SynthParams p_;
    int n_vocab_;
    ThreadPool& pool_;
    SynthLog log_;
    int head_dim_, q_dim_, kv_dim_, r0_;
    float beta_ffn_, beta_attn_;      // rms of each block's output relative to the residual's
    double c_;                        // u-component of every token embedding
    std::vector<float> u_;            // (dim) unit vector
    std::vector<double> z_;           // (n_ff) normal quantile of the target firing probability, hottest first
    std::vector<double> targets_;     // (n_ff) the target firing probabilities (kept with construction predictors)
    int n_cal_, seq_len_;
    std::vector<int32_t> cal_tokens_;  // (n_cal)
    std::vector<float> x_;            // (n_cal, dim) calibration residual stream after the layers built
    std::vector<float> w_;            // float scratch for one matrix (the largest)
    int built_ = -1;                  // last layer built and waited for
    using LayerTensors = std::array<std::vector<uint8_t>, (size_t)SynthTensor::SYNTH_COUNT>;
    LayerTensors slots_[2];           // stored tensors of layers l % 2: the one being written, the next one
    std::vector<SynthLayerStats> stats_;
    SynthReport predictors_;           // only its predictor fields are used
    std::future<void> pending_;       // the background build, if any
    int pending_layer_ = -1;
};

}  // namespace ember
