// Predictor training on the GPU (kernels-gpu/predictor-train.h, predictor/train-gpu.h): each elementwise kernel
// against the CPU loop's formula, and whole training runs against the CPU's: the same loss and held-out behaviour,
// deterministic from run to run, improving with epochs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels-cpu/thread-pool.h"
#include "kernels-gpu/predictor-train.h"
#include "predictor/train.h"
#include "tests/kernels-gpu-test-util.h"

namespace ember::gpu_test {
namespace {

TEST_F(Gpu, GatherRowsCopiesTheListedRows) {
    const int64_t rows = 50, width = 300;
    const std::vector<float> src = randn((size_t)(rows * width), 1.0f, 7);
    const std::vector<int32_t> ids = {49, 0, 7, 7, 23};
    DeviceMem dsrc(src), dids(ids), dout(ids.size() * width * sizeof(float));
    gpu::gather_rows(dsrc.as<float>(), dids.as<int32_t>(), (int64_t)ids.size(), width, dout.as<float>(), nullptr);
    const auto got = dout.to_host<float>();
    for (size_t j = 0; j < ids.size(); j++)
        for (int64_t i = 0; i < width; i++)
            ASSERT_EQ(got[j * width + i], src[ids[j] * width + i]) << "row " << j << " column " << i;
}

TEST_F(Gpu, ReluForwardAndBackward) {
    const int64_t n = 1000;
    std::vector<float> pre = randn(n, 1.0f, 8);
    pre[3] = 0.0f;
    const std::vector<float> d = randn(n, 1.0f, 9);
    DeviceMem dpre(pre), dh(n * sizeof(float)), dd(d);
    gpu::relu_forward(dh.as<float>(), dpre.as<float>(), n, nullptr);
    gpu::relu_backward(dd.as<float>(), dpre.as<float>(), n, nullptr);
    const auto h = dh.to_host<float>(), back = dd.to_host<float>();
    for (int64_t i = 0; i < n; i++) {
        ASSERT_EQ(h[i], std::max(pre[i], 0.0f)) << i;
        ASSERT_EQ(back[i], pre[i] > 0.0f ? d[i] : 0.0f) << i;
    }
}

// predictor/train.cpp's per-entry gradient and loss, written out again in float with double sums.
TEST_F(Gpu, BceGradientMatchesTheCpuFormula) {
    const int n_ff = 1000, n_rows = 40, n = 7;
    const float bias = -1.7f, pw = 4.0f, inv = 1.0f / (n * n_ff);
    const std::vector<float> scores = randn((size_t)n * n_ff, 3.0f, 10);
    std::vector<uint8_t> fired((size_t)n_rows * n_ff);
    std::mt19937 rng(11);
    for (uint8_t& f : fired) f = (rng() % 5) == 0;
    const std::vector<int32_t> ids = {3, 39, 0, 12, 12, 5, 20};
    DeviceMem dscores(scores), dfired(fired), dids(ids), dbias(std::vector<float>{bias}),
        dg((size_t)n * n_ff * sizeof(float)), ddsum(n * sizeof(double)), dloss(n * sizeof(double));
    gpu::bce_gradient(dscores.as<float>(), dfired.as<uint8_t>(), dids.as<int32_t>(), n, n_ff, dbias.as<float>(), pw,
                      inv, dg.as<float>(), ddsum.as<double>(), dloss.as<double>(), nullptr);
    const auto g = dg.to_host<float>();
    const auto dsum = ddsum.to_host<double>(), loss = dloss.to_host<double>();
    for (int j = 0; j < n; j++) {
        double want_dsum = 0.0, want_loss = 0.0;
        for (int i = 0; i < n_ff; i++) {
            const float l = scores[(size_t)j * n_ff + i] + bias, e = std::exp(-std::fabs(l));
            const float sig = l >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
            const bool y = fired[(size_t)ids[j] * n_ff + i] != 0;
            const float d = y ? pw * (sig - 1.0f) : sig;
            ASSERT_NEAR(g[(size_t)j * n_ff + i], d * inv, 1e-6f * std::fabs(d * inv) + 1e-12f) << j << "," << i;
            want_dsum += d;
            const float sp = std::log1p(e);
            want_loss += y ? pw * (std::max(-l, 0.0f) + sp) : std::max(l, 0.0f) + sp;
        }
        EXPECT_NEAR(dsum[j], want_dsum, 1e-5 * (1.0 + std::fabs(want_dsum))) << "row " << j;
        EXPECT_NEAR(loss[j], want_loss / n_ff, 1e-6 * want_loss / n_ff) << "row " << j;
    }
    // Without a loss buffer only the gradient and the sums are written.
    gpu::bce_gradient(dscores.as<float>(), dfired.as<uint8_t>(), dids.as<int32_t>(), n, n_ff, dbias.as<float>(), pw,
                      inv, dg.as<float>(), ddsum.as<double>(), nullptr, nullptr);
    EXPECT_EQ(ddsum.to_host<double>(), dsum);
}

TEST_F(Gpu, AdamStepsMatchTheCpuFormula) {
    const int64_t n = 5000;
    std::vector<float> w = randn(n, 1.0f, 12), m = randn(n, 0.1f, 13), v(n);
    const std::vector<float> g = randn(n, 0.5f, 14);
    for (int64_t i = 0; i < n; i++) v[i] = std::fabs(m[i]) * 0.3f;
    const float lr = 1e-2f, c1 = 1.0f - std::pow(0.9f, 3.0f), c2 = 1.0f - std::pow(0.999f, 3.0f);
    DeviceMem dw(w), dg(g), dm(m), dv(v);
    gpu::adam_step(dw.as<float>(), dg.as<float>(), dm.as<float>(), dv.as<float>(), n, lr, c1, c2, nullptr);
    const auto gw = dw.to_host<float>(), gm = dm.to_host<float>(), gv = dv.to_host<float>();
    // Tolerances scale with the terms: a sum that cancels keeps the rounding of its parts (the device may fuse a
    // multiply-add).
    for (int64_t i = 0; i < n; i++) {
        const float mi = 0.9f * m[i] + (1.0f - 0.9f) * g[i];
        const float vi = 0.999f * v[i] + (1.0f - 0.999f) * g[i] * g[i];
        const float step = lr * (mi / c1) / (std::sqrt(vi / c2) + 1e-8f), wi = w[i] - step;
        ASSERT_NEAR(gm[i], mi, 1e-6f * (std::fabs(m[i]) + std::fabs(g[i]))) << i;
        ASSERT_NEAR(gv[i], vi, 1e-6f * (v[i] + g[i] * g[i]) + 1e-12f) << i;
        ASSERT_NEAR(gw[i], wi, 1e-6f * std::fabs(w[i]) + 1e-4f * std::fabs(step)) << i;
    }

    // The bias: gradient = sum of row sums times inv.
    const std::vector<double> dsum = {0.5, -2.25, 1e-3, 7.0};
    const float inv = 0.01f;
    DeviceMem ddsum(dsum), dbias(std::vector<float>{0.3f, 0.02f, 0.001f});
    gpu::bias_adam_step(ddsum.as<double>(), (int64_t)dsum.size(), inv, dbias.as<float>(), dbias.as<float>() + 1,
                        dbias.as<float>() + 2, lr, c1, c2, nullptr);
    const auto b = dbias.to_host<float>();
    double gb = 0.0;
    for (double s : dsum) gb += s * inv;
    const float gf = (float)gb, mb = 0.9f * 0.02f + (1.0f - 0.9f) * gf;
    const float vb = 0.999f * 0.001f + (1.0f - 0.999f) * gf * gf;
    EXPECT_NEAR(b[1], mb, 1e-6f * std::fabs(mb));
    EXPECT_NEAR(b[2], vb, 1e-6f * vb);
    EXPECT_NEAR(b[0], 0.3f - lr * (mb / c1) / (std::sqrt(vb / c2) + 1e-8f), 1e-6f);
}

// Samples of a known low-rank rule: neuron i fires when its teacher score passes a threshold that leaves ~15% firing.
PredictorSamples teacher_samples(int n, int dim, int n_ff, uint32_t seed) {
    PredictorSamples s;
    s.dim = dim, s.n_ff = n_ff;
    s.x = randn((size_t)n * dim, 1.0f, seed);
    const int r = 8;
    const std::vector<float> a = randn((size_t)r * dim, 1.0f / std::sqrt((float)dim), seed + 1);
    const std::vector<float> b = randn((size_t)n_ff * r, 1.0f / std::sqrt((float)r), seed + 2);
    s.fired.resize((size_t)n * n_ff);
    std::vector<float> hid(r);
    for (int j = 0; j < n; j++) {
        for (int k = 0; k < r; k++) {
            float acc = 0.0f;
            for (int c = 0; c < dim; c++) acc += a[(size_t)k * dim + c] * s.x[(size_t)j * dim + c];
            hid[k] = acc;
        }
        for (int i = 0; i < n_ff; i++) {
            float acc = 0.0f;
            for (int k = 0; k < r; k++) acc += b[(size_t)i * r + k] * hid[k];
            s.fired[(size_t)j * n_ff + i] = acc > 1.0f;
        }
    }
    return s;
}

PredictorTrainArgs small_args(bool gpu) {
    PredictorTrainArgs a;
    a.rank = 32;
    a.epochs = 8;
    a.batch_size = 64;
    a.weight_type = DType::DTYPE_F32;
    a.gpu = gpu;
    return a;
}

// The GPU's run is the CPU's in another summation order: the same data, order and steps give nearly the same loss
// and held-out figures (Adam amplifies near-zero gradients' rounding, so single weights may part more).
TEST_F(Gpu, TrainingMatchesTheCpuLoop) {
    const PredictorSamples s = teacher_samples(900, 96, 160, 21);
    ThreadPool pool(2);
    const PredictorTrainResult cpu = predictor_train(s, small_args(false), pool);
    const PredictorTrainResult gpu = predictor_train(s, small_args(true), pool);
    EXPECT_NEAR(gpu.final_loss, cpu.final_loss, 0.02 * cpu.final_loss);
    EXPECT_NEAR(gpu.holdout.recall, cpu.holdout.recall, 0.01);
    EXPECT_NEAR(gpu.holdout.predicted_sparsity, cpu.holdout.predicted_sparsity, 0.03);
    EXPECT_EQ(gpu.holdout.true_sparsity, cpu.holdout.true_sparsity);  // the same held-out split
    EXPECT_GE(gpu.holdout.recall, 0.98);
    // The rule is learnable: far fewer neurons predicted than all of them.
    EXPECT_GT(gpu.holdout.predicted_sparsity, 0.5);
    double diff = 0.0, mag = 0.0;
    for (size_t i = 0; i < cpu.predictor.fc2.size(); i++) {
        diff += std::fabs((double)gpu.predictor.fc2[i] - cpu.predictor.fc2[i]);
        mag += std::fabs((double)cpu.predictor.fc2[i]);
    }
    EXPECT_LT(diff, 0.05 * mag) << "fc2 of the GPU run parts from the CPU's by " << diff / mag << " of its size";
}

TEST_F(Gpu, TrainingIsDeterministicAndLearns) {
    const PredictorSamples s = teacher_samples(700, 64, 128, 31);
    ThreadPool pool(2);
    PredictorTrainArgs a = small_args(true);
    const PredictorTrainResult r1 = predictor_train(s, a, pool);
    const PredictorTrainResult r2 = predictor_train(s, a, pool);
    EXPECT_EQ(r1.predictor.fc1, r2.predictor.fc1);
    EXPECT_EQ(r1.predictor.fc2, r2.predictor.fc2);
    EXPECT_EQ(r1.predictor.threshold, r2.predictor.threshold);
    EXPECT_EQ(r1.final_loss, r2.final_loss);
    a.epochs = 1;
    const PredictorTrainResult short_run = predictor_train(s, a, pool);
    EXPECT_LT(r1.final_loss, 0.8f * short_run.final_loss);
    EXPECT_GT(r1.holdout.predicted_sparsity, short_run.holdout.predicted_sparsity);
}

// A device without room for the run (here: all but 4 MiB of it taken first) trains on the CPU instead, from the same
// draws: the CPU loop's result, bit for bit.
TEST_F(Gpu, TrainingFallsBackToTheCpuWithoutVram) {
    const PredictorSamples s = teacher_samples(1500, 1024, 2048, 41);  // 9 MB of samples, more than is left
    ThreadPool pool(2);
    PredictorTrainArgs a = small_args(false);
    a.epochs = 3;
    const PredictorTrainResult cpu = predictor_train(s, a, pool);
    std::vector<void*> hogs;
    size_t free_bytes = 0, total = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
    for (size_t chunk = (size_t)1 << 30; chunk >= ((size_t)1 << 20);) {  // take what there is, down to 1 MiB pieces
        CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
        if (free_bytes < ((size_t)4 << 20) + chunk) {
            chunk /= 2;
            continue;
        }
        void* p = nullptr;
        if (cudaMalloc(&p, chunk) != cudaSuccess) {
            cudaGetLastError();
            chunk /= 2;
            continue;
        }
        hogs.push_back(p);
    }
    a.gpu = true;
    PredictorTrainResult fallback;
    EXPECT_NO_THROW(fallback = predictor_train(s, a, pool));
    for (void* p : hogs) cudaFree(p);
    EXPECT_EQ(fallback.predictor.fc1, cpu.predictor.fc1);
    EXPECT_EQ(fallback.predictor.fc2, cpu.predictor.fc2);
    EXPECT_EQ(fallback.final_loss, cpu.final_loss);
}

}  // namespace
}  // namespace ember::gpu_test
