// The GPU activation predictor against predictor/predictor.h (predictor_scores, predictor_active): scores for every
// weight type the profile can hold, and the threshold-and-compact kernel's list and device-side count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/error.h"
#include "kernels-cpu/thread-pool.h"
#include "kernels-gpu/dot.h"
#include "kernels-gpu/predictor.h"
#include "predictor/predictor.h"
#include "tests/kernels-gpu-test-util.h"

namespace ember::gpu_test {
namespace {

Predictor random_predictor(int dim, int rank, int n_ff, uint32_t seed) {
    Predictor p;
    p.dim = dim, p.rank = rank, p.n_ff = n_ff;
    p.threshold = 0.5f;
    p.fc1 = randn((size_t)rank * dim, 1.0f / std::sqrt((float)dim), seed);
    p.fc2 = randn((size_t)n_ff * rank, 1.0f / std::sqrt((float)rank), seed + 1);
    return p;
}

// scores: float sums in another order (1e-4 of sum_k |fc2_ik| |h_k|). With Q8_0 weights the hidden vector is
// quantized again; a hidden value a float ulp away from a rounding boundary may land one quant step off, so up to 4
// such steps (4 max_k |fc2_ik| * max |h| / 127) are allowed on top. ReLU and linear predictors (a linear one's
// hidden vector keeps its negative values, which the scores must see).
TEST_F(Gpu, PredictorScoresMatchCpuEveryType) {
    struct Shape {
        int dim, rank, n_ff;
    };
    ThreadPool pool(1);
    for (PredictorHidden act : {PredictorHidden::PREDICTOR_HIDDEN_RELU, PredictorHidden::PREDICTOR_HIDDEN_LINEAR})
    for (DType t : {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_Q8_0}) {
        for (const Shape sh : {Shape{64, 32, 1000}, Shape{4096, 256, 11008}, Shape{96, 64, 33}}) {
            SCOPED_TRACE(std::string(dtype_name(t)) + " " + predictor_hidden_name(act) + " dim=" +
                         std::to_string(sh.dim) + " rank=" + std::to_string(sh.rank) + " n_ff=" +
                         std::to_string(sh.n_ff));
            Predictor p = random_predictor(sh.dim, sh.rank, sh.n_ff, 101);
            p.hidden = act;
            const PredictorWeights pw = predictor_pack(p, t);
            PredictorScratch s;
            predictor_scratch_init(pw, 1, s);
            const std::vector<float> x = randn(sh.dim, 1.0f, 102);
            std::vector<float> want(sh.n_ff);
            predictor_scores(pw, x.data(), 1, want.data(), s, pool);
            const std::vector<float> hidden(s.hidden.begin(), s.hidden.begin() + sh.rank);  // (relu'd) fc1 x
            if (act == PredictorHidden::PREDICTOR_HIDDEN_LINEAR) {
                ASSERT_LT(*std::min_element(hidden.begin(), hidden.end()), 0.0f);  // the test sees negative units
            }

            DeviceMem dfc1(pw.fc1), dfc2(pw.fc2), dx(x), dscores(sh.n_ff * sizeof(float));
            gpu::PredictorGpuWeights g;
            g.type = t;
            g.fc1 = dfc1.as();
            g.fc2 = dfc2.as();
            g.dim = sh.dim, g.rank = sh.rank, g.n_ff = sh.n_ff, g.threshold = p.threshold;
            g.hidden_relu = act == PredictorHidden::PREDICTOR_HIDDEN_RELU;
            DeviceMem dxq(gpu::predictor_xq_bytes(g)), dhidden(sh.rank * sizeof(float));
            gpu::predictor_scores(g, dx.as<float>(), dscores.as<float>(), {dxq.as(), dhidden.as<float>()}, nullptr);
            const auto got = dscores.to_host<float>();

            // x prepared beforehand, in the scratch as the decode step passes it, gives the same scores bit for bit
            // (the x argument, zeros here, is then not read).
            DeviceMem dzeros(std::vector<float>(sh.dim, 0.0f));
            gpu::dot_prepare_vec(t, dx.as<float>(), dxq.as(), sh.dim, nullptr);
            gpu::predictor_scores(g, dzeros.as<float>(), dscores.as<float>(), {dxq.as(), dhidden.as<float>()},
                                  nullptr, dxq.as());
            EXPECT_EQ(dscores.to_host<float>(), got);

            // In two steps, the rows in two calls (the later rows first, as the decode step orders them): every
            // score as close to the CPU's as in one call.
            DeviceMem dsplit(std::vector<float>(sh.n_ff, -1e30f));
            const gpu::PredictorGpuScratch gs{dxq.as(), dhidden.as<float>()};
            gpu::predictor_hidden(g, dx.as<float>(), gs, nullptr);
            gpu::predictor_scores_rows(g, gs, sh.n_ff / 3, sh.n_ff, dsplit.as<float>(), nullptr);
            gpu::predictor_scores_rows(g, gs, 0, sh.n_ff / 3, dsplit.as<float>(), nullptr);
            const auto split = dsplit.to_host<float>();
            // Rows outside the predictor's are refused, not clamped; an empty range writes nothing.
            EXPECT_THROW(gpu::predictor_scores_rows(g, gs, -1, 4, dsplit.as<float>(), nullptr), Error);
            EXPECT_THROW(gpu::predictor_scores_rows(g, gs, 0, sh.n_ff + 1, dsplit.as<float>(), nullptr), Error);
            EXPECT_THROW(gpu::predictor_scores_rows(g, gs, 5, 4, dsplit.as<float>(), nullptr), Error);
            gpu::predictor_scores_rows(g, gs, 7, 7, dsplit.as<float>() + 1, nullptr);  // would write split[8]
            EXPECT_EQ(dsplit.to_host<float>(), split);

            const auto fc2 = dequantize_matrix(t, pw.fc2, sh.n_ff, sh.rank);
            float hmax = 0.0f;
            for (float h : hidden) hmax = std::max(hmax, std::fabs(h));
            for (int i = 0; i < sh.n_ff; i++) {
                double mag = 0.0, wmax = 0.0;
                for (int k = 0; k < sh.rank; k++) {
                    mag += std::fabs((double)fc2[(size_t)i * sh.rank + k]) * std::fabs(hidden[k]);
                    wmax = std::max(wmax, std::fabs((double)fc2[(size_t)i * sh.rank + k]));
                }
                const double requant = t == DType::DTYPE_Q8_0 ? 4.0 * wmax * hmax / 127.0 : 0.0;
                ASSERT_NEAR(got[i], want[i], 1e-4 * mag + requant + 1e-6) << "neuron " << i;
                ASSERT_NEAR(split[i], want[i], 1e-4 * mag + requant + 1e-6) << "neuron " << i << ", rows in two calls";
            }
        }
    }
}

// The compacted list equals predictor_active on the same scores, exactly: ascending indices, count on the device.
// Sizes giving a thread 1, 4, 11, 20 and 28 scores in one pass, and around the largest pass (32 scores a thread,
// 32768 in all) for several passes; thresholds giving none, some and all neurons.
TEST_F(Gpu, PredictorActiveMatchesCpu) {
    for (int n_ff : {1, 31, 1024, 4096, 4097, 11008, 20000, 28672, 32768, 32769, 70001}) {
        for (float threshold : {1e30f, 1.2816f, 0.0f, -1e30f}) {
            SCOPED_TRACE("n_ff=" + std::to_string(n_ff) + " threshold=" + std::to_string(threshold));
            const std::vector<float> scores = randn(n_ff, 1.0f, 111 + (uint32_t)n_ff);
            std::vector<int32_t> want(n_ff);
            want.resize(predictor_active(scores.data(), n_ff, threshold, want.data()));

            DeviceMem dscores(scores), dactive(std::vector<int32_t>(n_ff, -1)), dcount(std::vector<int32_t>{-1});
            gpu::predictor_active(dscores.as<float>(), n_ff, threshold, dactive.as<int32_t>(), dcount.as<int32_t>(),
                                  nullptr);
            const int32_t k = dcount.to_host<int32_t>()[0];
            ASSERT_EQ(k, (int32_t)want.size());
            auto got = dactive.to_host<int32_t>();
            got.resize(k);
            ASSERT_EQ(got, want);
        }
    }
}

}  // namespace
}  // namespace ember::gpu_test
