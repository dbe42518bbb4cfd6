#include "predictor/predictor.h"

#include <string>

#include "engine/error.h"
#include "kernels-cpu/dot.h"
#include "kernels-cpu/matmul.h"

namespace ember {

void predictor_validate(const Predictor& p) {
    if (p.dim <= 0 || p.rank <= 0 || p.n_ff <= 0)
        throw Error("predictor: dim, rank and n_ff must be positive, found dim=" + std::to_string(p.dim) +
                    " rank=" + std::to_string(p.rank) + " n_ff=" + std::to_string(p.n_ff));
    const size_t want1 = (size_t)p.rank * (size_t)p.dim, want2 = (size_t)p.n_ff * (size_t)p.rank;
    if (p.fc1.size() != want1)
        throw Error("predictor: fc1 has " + std::to_string(p.fc1.size()) + " floats, expected rank*dim = " +
                    std::to_string(want1));
    if (p.fc2.size() != want2)
        throw Error("predictor: fc2 has " + std::to_string(p.fc2.size()) + " floats, expected n_ff*rank = " +
                    std::to_string(want2));
}

void predictor_run(const Predictor& p, const float* x, float* scores, float* hidden, ThreadPool& pool) {
    constexpr DType wt = DType::DTYPE_F32;
    // F32 weights take F32 activations (dot_vec_type(F32) == F32), for which dot_prepare_vec is a plain copy:
    // x and hidden are already in prepared form, so no extra scratch is needed.
    matvec(wt, p.fc1.data(), x, hidden, p.rank, p.dim, pool);       // hidden (rank) = fc1 · x
    for (int k = 0; k < p.rank; k++) hidden[k] = hidden[k] > 0.0f ? hidden[k] : 0.0f;  // relu
    matvec(wt, p.fc2.data(), hidden, scores, p.n_ff, p.rank, pool);  // scores (n_ff) = fc2 · hidden
}

int predictor_active(const float* scores, int n_ff, float threshold, int32_t* active) {
    int n = 0;
    for (int i = 0; i < n_ff; i++)
        if (scores[i] > threshold) active[n++] = i;
    return n;
}

}  // namespace ember
