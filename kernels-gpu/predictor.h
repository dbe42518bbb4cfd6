// The activation predictor on the GPU (Deja Vu, ICML'23, section 3; PowerInfer, SOSP'24, section 5.1); mirrors
// predictor/predictor.h's predictor_scores (one token) and predictor_active, with device pointers:
//   scores = fc2 · relu(fc1 · x) (fc2 · (fc1 · x) for a linear predictor),
//   active = ascending { i : scores[i] > threshold }, count written on the device,
// so the sparse FFN kernels read the list and its length without a round trip to the host.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels-cpu/dtype.h"

namespace ember::gpu {

// Device copies of PredictorWeights (predictor_pack's output).
struct PredictorGpuWeights {
    DType type = DType::DTYPE_F32;  // F32, F16 or Q8_0
    const void* fc1 = nullptr;      // (rank, dim) rows of `type`
    const void* fc2 = nullptr;      // (n_ff, rank) rows of `type`
    int dim = 0;
    int rank = 0;
    int n_ff = 0;
    bool hidden_relu = true;  // PredictorHidden::PREDICTOR_HIDDEN_RELU; false: linear, no activation
    float threshold = 0.0f;
};

// Device scratch of predictor_scores, owned by the caller.
struct PredictorGpuScratch {
    void* xq = nullptr;       // predictor_xq_bytes(p) bytes, 16-byte aligned
    float* hidden = nullptr;  // (rank)
};
size_t predictor_xq_bytes(const PredictorGpuWeights& p);

// scores (n_ff) = fc2 · relu(fc1 · x) for one token x (dim), through gpu::matvec in p.type. x_prepared, unless
// null, is x already prepared for p.type (dot_prepare_vec; it may lie in s.xq), which saves preparing it again.
void predictor_scores(const PredictorGpuWeights& p, const float* x, float* scores, const PredictorGpuScratch& s,
                      cudaStream_t stream, const void* x_prepared = nullptr);

// predictor_scores in two steps, so that some scores can be ready before the others: predictor_hidden leaves
// relu(fc1 · x) prepared for fc2 in s.xq (x_prepared as above; a linear predictor whose fc2 reads F32 activations
// reads s.hidden as it is, and where fc2's rows are short enough for gpu::matvec_from_floats, each fc2 launch
// prepares s.hidden itself and s.xq is left as it was), and each predictor_scores_rows call then writes
// scores[row_begin, row_end) from it. A row's score may round differently than in one call over all rows (the
// matvec picks its split of a row by the row count). Throws ember::Error for rows outside [0, n_ff) or
// row_end < row_begin (an empty range writes nothing).
void predictor_hidden(const PredictorGpuWeights& p, const float* x, const PredictorGpuScratch& s, cudaStream_t stream,
                      const void* x_prepared = nullptr);
void predictor_scores_rows(const PredictorGpuWeights& p, const PredictorGpuScratch& s, int row_begin, int row_end,
                           float* scores, cudaStream_t stream);

// active (room for n_ff) = the indices i with scores[i] > threshold in ascending order; *count = how many.
// One block scans the scores in order, up to 32768 a pass (one ballot per 32 scores, prefix sums of their counts).
void predictor_active(const float* scores, int n_ff, float threshold, int32_t* active, int32_t* count,
                      cudaStream_t stream);

}  // namespace ember::gpu
