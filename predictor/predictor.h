// The per-layer activation predictor (Deja Vu, ICML'23, section 3; PowerInfer, SOSP'24, section 5.1): a low-rank
// MLP that reads the FFN input and scores every FFN neuron; neurons scoring above the threshold are computed.
//   scores = fc2 · relu(fc1 · x),   active = { i : scores[i] > threshold }
// or, for a linear predictor (PredictorHidden::PREDICTOR_HIDDEN_LINEAR), scores = fc2 · (fc1 · x).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels-cpu/dtype.h"
#include "kernels-cpu/thread-pool.h"

namespace ember {

// The hidden layer's activation. ReLU is what PowerInfer's predictors and ember-profile's trained ones use. Linear
// serves a rule that is low-rank and linear in x (ember-synth's construction): a ReLU predictor needs twice the
// rank for it, as z = relu(z) - relu(-z), so twice the bytes in VRAM and per token.
enum class PredictorHidden {
    PREDICTOR_HIDDEN_RELU,
    PREDICTOR_HIDDEN_LINEAR,
};
const char* predictor_hidden_name(PredictorHidden h);  // "relu", "linear"

struct Predictor {
    int dim = 0;              // FFN input width (the model's dim)
    int rank = 0;             // hidden width of the predictor
    PredictorHidden hidden = PredictorHidden::PREDICTOR_HIDDEN_RELU;
    int n_ff = 0;             // FFN neurons scored
    float threshold = 0.0f;   // neuron i is predicted active when scores[i] > threshold
    std::vector<float> fc1;   // (rank, dim) row-major, row k = hidden unit k
    std::vector<float> fc2;   // (n_ff, rank) row-major, row i = neuron i
};

// Throws ember::Error naming the field when sizes are not positive or fc1/fc2 do not hold rank*dim / n_ff*rank floats.
void predictor_validate(const Predictor& p);

// scores (n_ff) = fc2 · relu(fc1 · x) (fc2 · (fc1 · x) when linear). x: dim floats; hidden: rank floats of scratch.
// Does not validate (hot path); call predictor_validate once at load.
void predictor_run(const Predictor& p, const float* x, float* scores, float* hidden, ThreadPool& pool);

// The predictor as the engine runs it: fc1 and fc2 converted once (at load) to `type` and read by matvec (one token)
// or matmul (a batch) like any model weight, so the bytes a token reads shrink with the type. The profile file's
// weight type is the run type (ModelProfile::weight_type).
struct PredictorWeights {
    DType type = DType::DTYPE_F32;  // F32, F16 or Q8_0 (Q8_0 needs dim and rank to be multiples of 32)
    int dim = 0;
    int rank = 0;
    int n_ff = 0;
    PredictorHidden hidden = PredictorHidden::PREDICTOR_HIDDEN_RELU;
    float threshold = 0.0f;
    std::vector<uint8_t> fc1;  // (rank, dim) rows of `type`
    std::vector<uint8_t> fc2;  // (n_ff, rank) rows of `type`
    size_t bytes() const { return fc1.size() + fc2.size(); }  // read once per token
};

// Validates p and converts its weights to `type`. Throws ember::Error naming the type and the size that does not fit
// its block (Q8_0: dim and rank multiples of 32), or an unsupported type.
PredictorWeights predictor_pack(const Predictor& p, DType type);

// Scratch of predictor_scores for up to n_tokens tokens, owned by the caller (a session's state).
struct PredictorScratch {
    std::vector<float> hidden;   // (n_tokens, rank)
    std::vector<uint8_t> xq;     // one row converted to dot_vec_type(type): dot_vec_bytes(type, max(dim, rank))
    std::vector<float> gemm;     // matmul scratch for both products (batches only)
};
void predictor_scratch_init(const PredictorWeights& p, int n_tokens, PredictorScratch& s);
// The largest scratch any of `ps` needs for n_tokens, so that one scratch serves every layer.
void predictor_scratch_init(const std::vector<const PredictorWeights*>& ps, int n_tokens, PredictorScratch& s);

// scores (n_tokens, n_ff) = fc2 · relu(fc1 · x) (no relu when linear) for x (n_tokens, dim), row-major. One token
// runs through matvec, a batch through matmul; both in p.type. No allocation: s from predictor_scratch_init for at
// least n_tokens.
void predictor_scores(const PredictorWeights& p, const float* x, int n_tokens, float* scores, PredictorScratch& s,
                      ThreadPool& pool);

// Writes the indices i (ascending) with scores[i] > threshold into active (room for n_ff) and returns their count.
int predictor_active(const float* scores, int n_ff, float threshold, int32_t* active);
// The first over the pool, in chunks of at least 1024 scores: the same list (same order).
int predictor_active(const float* scores, int n_ff, float threshold, int32_t* active, ThreadPool& pool);
// The list from comparisons already made: ids[i] for every i < n whose bit (bit i % 32 of bits[i / 32]) is set, in
// the order given; returns their count. Bits past n in the last word are ignored. The hybrid's GPU hands its cold
// neurons' comparisons to the host so (gpu::hand_split_ffn_inputs_to_host).
int predictor_active_bits(const uint32_t* bits, const int32_t* ids, int n, int32_t* active);

}  // namespace ember
