// Training and evaluation of the activation predictor (predictor/predictor.h) from recorded FFN inputs and firing
// labels. Loss: binary cross-entropy on logit = score + bias with positives weighted by pos_weight (recall matters
// more than precision: a missed neuron changes the output, a spurious one only costs time; PowerInfer, section 5.1).
// Optimiser: minibatch Adam (Kingma & Ba, 2015). The bias is a training aid only: the threshold absorbs it.
// The threshold and the held-out metrics come from the predictor packed in the type it runs in (predictor_pack +
// predictor_scores, one token at a time as decode runs it), so they hold for what the engine computes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels-cpu/dtype.h"
#include "kernels-cpu/thread-pool.h"
#include "predictor/predictor.h"

namespace ember {

struct PredictorSamples {
    int dim = 0;                 // FFN input width
    int n_ff = 0;                // FFN neurons
    std::vector<float> x;        // (n_samples, dim): FFN inputs, one row per token
    std::vector<uint8_t> fired;  // (n_samples, n_ff): 1 where the neuron's activation was non-zero, else 0
};
// n_samples of s, after checking x and fired agree with dim and n_ff (throws ember::Error naming the field).
int64_t predictor_samples_count(const PredictorSamples& s);

// The split predictor_train uses: the samples in a permutation drawn from seed, the last
// round(n * holdout_fraction) of it held out. Exposed so that tests can measure on the same held-out samples.
void predictor_split(const PredictorSamples& s, float holdout_fraction, uint64_t seed, PredictorSamples* train,
                     PredictorSamples* holdout);

struct PredictorMetrics {
    int64_t n_samples = 0;
    double recall = 0.0;              // TP / (TP + FN): fired neurons that were predicted (1 when none fired)
    double precision = 0.0;           // TP / (TP + FP): predicted neurons that fired (1 when none predicted)
    double predicted_sparsity = 0.0;  // 1 - predicted / (n_samples * n_ff): share of neurons skipped
    double true_sparsity = 0.0;       // 1 - fired / (n_samples * n_ff): the oracle's share
};

struct PredictorTrainArgs {
    int rank = 32;                  // predictor hidden width (predictor_train_auto tries its own)
    int epochs = 30;                // passes over the training split
    int batch_size = 256;           // samples per Adam step; each step also streams all weights and Adam moments,
                                    // which at 7B widths costs as much as the products of 64 samples
    float lr = 1e-2f;               // Adam step size at dim <= 256, scaled down for wider inputs (predictor_step_size;
                                    // tiny-relu: batch 256 at 1e-2 matches 64 at 3e-3)
    float pos_weight = 4.0f;        // weight of a fired neuron's loss term against a silent one's
    float holdout_fraction = 0.2f;  // share of samples held out to choose the threshold and measure
    float recall_target = 0.99f;    // the threshold is the largest reaching this recall on the held-out split
    DType weight_type = DType::DTYPE_Q8_0;  // type the predictor runs in: F32, F16 or Q8_0 (rank and dim multiples
                                            // of 32); Q8_0 skips as many neurons as F16 on tiny-relu at half the bytes
    uint64_t seed = 1;              // split, initialisation and shuffling; same seed and data, same predictor
    bool gpu = false;               // run the optimisation on the CUDA device (predictor/train-gpu.h); the threshold
                                    // and metrics still come from the CPU's packed predictor. Where the device has
                                    // too little free memory the same training runs on the CPU (one warning per
                                    // process). ember::Error in a build without CUDA
};

struct PredictorTrainResult {
    Predictor predictor;         // threshold and weights as packed: fc1/fc2 hold the weight_type values as floats
    PredictorMetrics holdout;    // measured on the held-out split at that threshold, through the packed weights
    size_t predictor_bytes = 0;  // packed weights read per token (PredictorWeights::bytes)
    float final_loss = 0.0f;     // mean weighted BCE over the last epoch's training batches
};

// The step size training uses: lr * min(1, 256 / dim). Adam moves every weight by about the step size, so one step
// moves a hidden unit's input fc1 . x by about lr * dim * mean|x|: wide inputs need a smaller step. Measured on a 7B
// shape (dim 4096, rank 128, 8192 calibration tokens, GPU): the expected FFN bytes per token were 0.74 of dense at
// 1e-2, 0.54 at 3e-3, 0.51 at 1e-3 and 0.55 at 3e-4; at ranks 32 and 64, 1e-2 left every hidden unit dead in most
// layers (the predictor then marks every neuron).
float predictor_step_size(float lr, int dim);

// Trains a predictor on s (split by predictor_split), packs it in args.weight_type and sets the threshold on the
// held-out split. Deterministic for a given seed and data, for any thread count. Throws ember::Error on
// inconsistent samples or arguments.
PredictorTrainResult predictor_train(const PredictorSamples& s, const PredictorTrainArgs& args, ThreadPool& pool);

// Recall, precision and sparsity at the threshold on s: of the float predictor (predictor_run's arithmetic,
// batched), or of the packed one through predictor_scores one token at a time, as decode runs it.
// Throw ember::Error when dim or n_ff disagree.
PredictorMetrics predictor_evaluate(const Predictor& p, const PredictorSamples& s, ThreadPool& pool);
PredictorMetrics predictor_evaluate(const PredictorWeights& p, const PredictorSamples& s, ThreadPool& pool);

// The largest threshold t with (positives scoring > t) >= recall_target * positives, given the scores of the
// positive (fired) entries. Exposed for tests.
float predictor_choose_threshold(std::vector<float> positive_scores, float recall_target);

// ---- rank chosen per layer by bytes ----
// Per token, a layer reads its predictor and then the gate and up rows and down columns of the predicted-active
// neurons: expected bytes = predictor bytes + (1 - predicted sparsity) * ffn_bytes. A wider predictor skips more
// neurons at the same recall but costs more to read; the rank minimising the sum wins.

// Candidate ranks: 32, 64, 128, ... up to min(1024, dim / 2, n_ff / 2), at least {32}. Past dim / 2 the
// predictor's fc1 approaches a dense projection of the input; 1024 bounds the training time (7B: see
// tests/bench/predictor-train-bench.cpp).
std::vector<int> predictor_rank_ladder(int dim, int n_ff);

// predictor_bytes + (1 - m.predicted_sparsity) * ffn_bytes.
double predictor_expected_bytes(size_t predictor_bytes, const PredictorMetrics& m, double ffn_bytes);

struct PredictorRankTrial;
struct PredictorRankSearch {
    std::vector<int> ranks;  // candidates, ascending; empty = predictor_rank_ladder(dim, n_ff)
    double ffn_bytes = 0.0;  // bytes of the layer's gate, up and down weights in the model's type (> 0)
    std::function<void(const PredictorRankTrial&)> on_trial;  // called after each trial (progress), may be empty
};

struct PredictorRankTrial {
    int rank = 0;
    PredictorMetrics holdout;    // at this rank's own threshold
    float threshold = 0.0f;
    size_t predictor_bytes = 0;
    double expected_bytes = 0.0;  // per token, predictor_expected_bytes
    double seconds = 0.0;         // training and evaluation time
};

struct PredictorRankResult {
    PredictorTrainResult best;             // the trial with the smallest expected bytes (the smaller rank on ties)
    std::vector<PredictorRankTrial> trials;  // in the order tried (ascending rank)
    int best_trial = 0;                    // index into trials
    const char* stop_reason = "";          // why no larger rank was tried
};

// Trains one predictor per candidate rank (ascending, each with args but its own rank) and keeps the cheapest.
// Stops early when the cost has passed its minimum: once a rank costs more than the best so far (doubling the rank
// doubles the bytes it adds while the neurons it saves shrink), or when even an oracle-accurate predictor of the
// next rank (true sparsity) could not beat the best. Throws ember::Error on bad candidates or ffn_bytes.
PredictorRankResult predictor_train_auto(const PredictorSamples& s, const PredictorTrainArgs& args,
                                         const PredictorRankSearch& search, ThreadPool& pool);

}  // namespace ember
