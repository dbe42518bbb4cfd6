// predictor_train's optimisation loop (predictor/train.h) on the CUDA device: the same initial weights, minibatch
// order, weighted cross-entropy and Adam steps as the CPU loop, with the products through cuBLAS SGEMM in float (no
// TF32) and the elementwise steps in kernels-gpu/predictor-train.h. The samples go to VRAM once per call; the whole
// run is queued without a round trip to the host. Built only with CUDA (EMBER_CUDA); nothing here needs CUDA's
// headers.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/error.h"
#include "predictor/predictor.h"
#include "predictor/train.h"

namespace ember {

// What predictor_fit_gpu throws when the device has too little free memory for a run's cuBLAS handle or buffers
// (the samples, the weights, Adam's moments, one minibatch); p is unchanged then.
struct GpuTrainingOutOfMemory : Error {
    using Error::Error;
};

// Trains p (holding the initial weights; dim, rank and n_ff set) on all of s for a.epochs epochs of minibatches of
// a.batch_size, starting from the bias `bias`. Before each epoch `shuffle` permutes the sample order, which starts as
// 0 .. n-1 and carries over between epochs, as the CPU loop does. Returns the mean weighted loss over the last
// epoch's samples. Throws GpuTrainingOutOfMemory when the buffers do not fit, else ember::Error (CUDA's or cuBLAS's
// message).
float predictor_fit_gpu(const PredictorSamples& s, const PredictorTrainArgs& a,
                        const std::function<void(std::vector<int64_t>&)>& shuffle, float bias, Predictor& p);

}  // namespace ember
