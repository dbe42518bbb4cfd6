// The per-layer activation predictor (Deja Vu, ICML'23, section 3; PowerInfer, SOSP'24, section 5.1): a low-rank
// MLP that reads the FFN input and scores every FFN neuron; neurons scoring above the threshold are computed.
//   scores = fc2 · relu(fc1 · x),   active = { i : scores[i] > threshold }
#pragma once
#include <cstdint>
#include <vector>

#include "kernels-cpu/thread-pool.h"

namespace ember {

struct Predictor {
    int dim = 0;              // FFN input width (the model's dim)
    int rank = 0;             // hidden width of the predictor
    int n_ff = 0;             // FFN neurons scored
    float threshold = 0.0f;   // neuron i is predicted active when scores[i] > threshold
    std::vector<float> fc1;   // (rank, dim) row-major, row k = hidden unit k
    std::vector<float> fc2;   // (n_ff, rank) row-major, row i = neuron i
};

// Throws ember::Error naming the field when sizes are not positive or fc1/fc2 do not hold rank*dim / n_ff*rank floats.
void predictor_validate(const Predictor& p);

// scores (n_ff) = fc2 · relu(fc1 · x). x: dim floats; hidden: rank floats of scratch. Does not validate (hot path);
// call predictor_validate once at load.
void predictor_run(const Predictor& p, const float* x, float* scores, float* hidden, ThreadPool& pool);

// Writes the indices i (ascending) with scores[i] > threshold into active (room for n_ff) and returns their count.
int predictor_active(const float* scores, int n_ff, float threshold, int32_t* active);

}  // namespace ember
