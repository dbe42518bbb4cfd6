// Training and evaluation of the activation predictor (predictor/predictor.h) from recorded FFN inputs and firing
// labels. Loss: binary cross-entropy on logit = score + bias with positives weighted by pos_weight (recall matters
// more than precision: a missed neuron changes the output, a spurious one only costs time; PowerInfer, section 5.1).
// Optimiser: minibatch Adam (Kingma & Ba, 2015). The bias is a training aid only: the threshold absorbs it.
#pragma once
#include <cstdint>
#include <vector>

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

struct PredictorMetrics {
    int64_t n_samples = 0;
    double recall = 0.0;              // TP / (TP + FN): fired neurons that were predicted (1 when none fired)
    double precision = 0.0;           // TP / (TP + FP): predicted neurons that fired (1 when none predicted)
    double predicted_sparsity = 0.0;  // 1 - predicted / (n_samples * n_ff): share of neurons skipped
    double true_sparsity = 0.0;       // 1 - fired / (n_samples * n_ff): the oracle's share
};

struct PredictorTrainArgs {
    int rank = 32;                  // predictor hidden width
    int epochs = 30;                // passes over the training split
    int batch_size = 64;            // samples per Adam step
    float lr = 3e-3f;               // Adam step size
    float pos_weight = 4.0f;        // weight of a fired neuron's loss term against a silent one's
    float holdout_fraction = 0.2f;  // share of samples held out to choose the threshold and measure
    float recall_target = 0.99f;    // the threshold is the largest reaching this recall on the held-out split
    uint64_t seed = 1;              // initialisation and shuffling; same seed and data give the same predictor
};

struct PredictorTrainResult {
    Predictor predictor;       // trained weights and chosen threshold
    PredictorMetrics holdout;  // measured on the held-out split at that threshold
    float final_loss = 0.0f;   // mean weighted BCE over the last epoch's training batches
};

// Trains a predictor on s (shuffled by seed, split into train and held-out), then sets the threshold.
// Deterministic for a given seed and data. Throws ember::Error on inconsistent samples or arguments.
PredictorTrainResult predictor_train(const PredictorSamples& s, const PredictorTrainArgs& args, ThreadPool& pool);

// Recall, precision and sparsity of p at p.threshold on s. Throws ember::Error when dim or n_ff disagree.
PredictorMetrics predictor_evaluate(const Predictor& p, const PredictorSamples& s, ThreadPool& pool);

// The largest threshold t with (positives scoring > t) >= recall_target * positives, given the scores of the
// positive (fired) entries. Exposed for tests.
float predictor_choose_threshold(std::vector<float> positive_scores, float recall_target);

}  // namespace ember
