// The offline profiler on models/tiny-relu-q8_0.gguf over ~1024 tokens of docs/user-guide.md, with few epochs to
// stay fast: the library (profile_model) at a fixed rank and with the rank chosen per layer by bytes, and the app
// (ember-profile).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "engine/ember.h"
#include "engine/ffn-stats.h"
#include "models/llama.h"
#include "offline-profiler/profiler.h"
#include "predictor/profile.h"
#include "tests/run-process.h"

namespace {

const std::string kModel = std::string(EMBER_SOURCE_DIR) + "/models/tiny-relu-q8_0.gguf";
const std::string kCorpus = std::string(EMBER_SOURCE_DIR) + "/docs/user-guide.md";
constexpr int kTokens = 1024;
constexpr float kRecall = 0.99f;

std::string temp_path(const std::string& name) { return ember_test::temp_path("profiler", name); }

std::unique_ptr<ember::Model> load_model() {
    ember::ModelParams mp;
    mp.path = kModel;
    return ember::Model::load(mp);
}

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

TEST(Profiler, ProfileReadsBackAndMatchesFfnStats) {
    std::unique_ptr<ember::Model> model = load_model();
    const ember::ModelInfo& info = model->info();
    const ember::Tokenizer& tok = model->tokenizer();
    const std::vector<int32_t> tokens = tok.encode(ember_test::slurp(kCorpus), tok.add_bos_default(), false);
    ASSERT_GE((int)tokens.size(), kTokens) << "corpus too short";

    ember::ProfileParams p;
    p.n_ctx = 256;
    p.max_tokens = kTokens;
    p.max_samples = kTokens;
    p.n_threads = 2;
    p.auto_rank = false;
    p.train.rank = 32;
    p.train.epochs = 10;
    p.train.recall_target = kRecall;
    p.train.weight_type = ember::DType::DTYPE_Q8_0;
    const ember::ModelProfile prof = ember::profile_model(*model, tokens, p);
    EXPECT_EQ(prof.weight_type, ember::DType::DTYPE_Q8_0);
    const std::string path = temp_path("tiny.profile.gguf");
    ember::profile_write(prof, path);
    EXPECT_FALSE(file_exists(path + ".tmp"));

    const ember::ModelProfile back = ember::profile_read(path);
    EXPECT_EQ(back.weight_type, ember::DType::DTYPE_Q8_0);
    EXPECT_NO_THROW(ember::profile_check_model(back, info));
    EXPECT_EQ(back.n_tokens, (uint64_t)kTokens);
    EXPECT_EQ(back.model_name, info.name);
    ASSERT_EQ((int)back.layers.size(), info.n_layers);

    // The same tokens through engine/ffn-stats: mean firing frequency = 1 - sparsity.
    ember::FfnMeasureParams mp;
    mp.n_ctx = p.n_ctx;
    mp.max_tokens = kTokens;
    mp.n_threads = 2;
    const ember::FfnStats stats = ember::ffn_stats_measure(*model, tokens, mp);
    for (int l = 0; l < info.n_layers; l++) {
        const ember::LayerProfile& lp = back.layers[l];
        ASSERT_EQ((int)lp.freq.size(), info.n_ff);
        double mean = 0;
        for (float f : lp.freq) mean += f;
        mean /= info.n_ff;
        const double sparsity = ember::ffn_stats_layer(stats, l).sparsity;
        EXPECT_NEAR(mean, 1.0 - sparsity, 0.02) << "layer " << l;
        EXPECT_EQ(lp.predictor.rank, 32);
        // Stored as measured: the trained weights are Q8_0 values, so the file holds them exactly.
        EXPECT_EQ(lp.predictor.fc1, prof.layers[l].predictor.fc1) << "layer " << l;
        EXPECT_EQ(lp.predictor.threshold, prof.layers[l].predictor.threshold) << "layer " << l;
        EXPECT_EQ(lp.predictor.dim, info.dim);
        EXPECT_GE(lp.recall, kRecall - 0.01f) << "layer " << l;
        EXPECT_GT(lp.precision, 0.0f) << "layer " << l;
        // Trained on the true FFN input x_in, even this small predictor skips a good share of neurons (about 40%
        // at rank 32 and 10 epochs); it cannot skip more than the truly silent ones at recall ~1.
        EXPECT_GT(lp.sparsity, 0.05f) << "layer " << l;
        EXPECT_LE(lp.sparsity, sparsity + 0.05) << "layer " << l;
        std::printf("layer %d: true sparsity %.4f, freq mean %.4f, predictor recall %.4f precision %.4f "
                    "sparsity %.4f\n", l, sparsity, mean, lp.recall, lp.precision, lp.sparsity);
    }
    std::remove(path.c_str());
}

// Rank chosen per layer: each layer keeps the candidate (32, 64, 128 for dim 256) of fewest expected bytes per
// token, priced against the layer's own Q8_0 FFN; the report and the table agree with the profile.
TEST(Profiler, AutoRankKeepsTheCheapestCandidatePerLayer) {
    std::unique_ptr<ember::Model> model = load_model();
    const ember::ModelInfo& info = model->info();
    const ember::Tokenizer& tok = model->tokenizer();
    const std::vector<int32_t> tokens = tok.encode(ember_test::slurp(kCorpus), tok.add_bos_default(), false);
    ember::ProfileParams p;
    p.max_tokens = kTokens;
    p.max_samples = kTokens;
    p.n_threads = 2;
    p.train.epochs = 10;
    ASSERT_TRUE(p.auto_rank);  // the default
    std::vector<ember::ProfileLayerReport> report;
    const ember::ModelProfile prof = ember::profile_model(*model, tokens, p, &report);
    ASSERT_EQ((int)report.size(), info.n_layers);
    const std::vector<int> ladder = ember::predictor_rank_ladder(info.dim, info.n_ff);
    ASSERT_EQ(ladder, (std::vector<int>{32, 64, 128}));
    const double q8_ffn = 3.0 * info.dim * info.n_ff * 34 / 32;  // gate, up, down: 34-byte blocks of 32
    std::vector<int> ranks;
    for (int l = 0; l < info.n_layers; l++) {
        const ember::LayerProfile& lp = prof.layers[l];
        const ember::ProfileLayerReport& r = report[l];
        const ember::LlamaLayer& w = model->llama().layers[l];
        EXPECT_EQ(r.ffn_bytes, (double)(w.w_gate.bytes() + w.w_up.bytes() + w.w_down.bytes()));
        EXPECT_EQ(r.ffn_bytes, q8_ffn);
        ASSERT_FALSE(r.trials.empty());
        const auto best = std::min_element(r.trials.begin(), r.trials.end(), [](const auto& a, const auto& b) {
            return a.expected_bytes < b.expected_bytes;
        });
        EXPECT_EQ(lp.predictor.rank, best->rank) << "layer " << l;
        EXPECT_EQ(lp.predictor.threshold, best->threshold) << "layer " << l;
        EXPECT_EQ(r.expected_bytes, best->expected_bytes) << "layer " << l;
        EXPECT_EQ(r.predictor_bytes, best->predictor_bytes) << "layer " << l;
        EXPECT_FALSE(r.stop_reason.empty());
        for (size_t k = 0; k < r.trials.size(); k++) {
            EXPECT_EQ(r.trials[k].rank, ladder[k]) << "layer " << l << ": candidates are tried in ladder order";
            EXPECT_GE(r.trials[k].holdout.recall, kRecall - 1e-6) << "layer " << l;
        }
        EXPECT_EQ(lp.sparsity, (float)r.holdout.predicted_sparsity) << "layer " << l;
        EXPECT_EQ(r.expected_bytes, (double)r.predictor_bytes + (1.0 - r.holdout.predicted_sparsity) * r.ffn_bytes)
            << "layer " << l;
        EXPECT_LT(r.expected_bytes, r.ffn_bytes) << "layer " << l << ": the predictor should pay for itself";
        ranks.push_back(lp.predictor.rank);
    }
    const std::string table = ember::profile_table(prof, report);
    std::printf("%s", table.c_str());
    EXPECT_NE(table.find("pred.KiB"), std::string::npos);
    EXPECT_NE(table.find("q8_0"), std::string::npos);
    EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), info.n_layers + 3);  // title, header, layers, total
}

// Training on the CPU: 4096 tokens whatever the memory. On the GPU: 16384 where 40 % of the memory holds their
// samples, fewer (down to 4096) where it does not, 4096 when the memory is unknown.
TEST(Profiler, DefaultTokensFollowWhereTrainingRunsAndHostMemory) {
    using namespace ember;
    ModelInfo info;
    info.n_layers = 32, info.dim = 4096, info.n_ff = 11008;  // a 7B
    const uint64_t per = profile_sample_bytes_per_token(info);
    EXPECT_EQ(per, 32u * (4096u * 4u + 11008u));
    const uint64_t gib = 1ull << 30;
    EXPECT_EQ(profile_default_tokens(false, per, 1024 * gib), kProfileTokensCpu);
    EXPECT_EQ(profile_default_tokens(true, per, 128 * gib), kProfileTokensGpu);  // 14.4 GB of samples
    EXPECT_EQ(profile_default_tokens(true, per, 0), kProfileTokensCpu);
    EXPECT_EQ(profile_default_tokens(true, per, 16 * gib), (int64_t)(16 * gib / 10 * 4 / per));  // 7833
    EXPECT_EQ(profile_default_tokens(true, per, 4 * gib), kProfileTokensCpu);  // 1958 would fit: raised to 4096
    info.n_layers = 80, info.dim = 8192, info.n_ff = 28672;  // a 70B: 4.9 MB a token
    const uint64_t per70 = profile_sample_bytes_per_token(info);
    const int64_t t70 = profile_default_tokens(true, per70, 128 * gib);
    EXPECT_GT(t70, kProfileTokensCpu);
    EXPECT_LT(t70, kProfileTokensGpu);
    EXPECT_LE((uint64_t)t70 * per70, 128 * gib / 10 * 4);
}

TEST(Profiler, RejectsBadParameters) {
    std::unique_ptr<ember::Model> model = load_model();
    ember::ProfileParams p;
    EXPECT_THROW(ember::profile_model(*model, {}, p), ember::Error);
    p.n_ctx = 0;
    EXPECT_THROW(ember::profile_model(*model, {1, 2, 3}, p), ember::Error);
    p.n_ctx = 16;
    EXPECT_THROW(ember::profile_model(*model, {1}, p), ember::Error);  // nothing to hold out
}

TEST(ProfilerApp, WritesAProfileAndNamesAMissingCorpus) {
    const std::string out = temp_path("app.profile.gguf");
    std::remove(out.c_str());
    ember_test::RunResult r = ember_test::run_process(
        EMBER_PROFILE_BIN, {"-m", kModel, "-f", kCorpus, "-o", out, "--tokens", "512", "-c", "128", "-t", "2",
                            "--rank", "8", "--predictor-type", "f16", "--epochs", "2", "--recall", "0.95",
                            "-ngl", "0"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.err.find("dense pass on CPU, predictors train on the CPU"), std::string::npos) << r.err;
    ember::ModelProfile p = ember::profile_read(out);
    EXPECT_EQ(p.n_tokens, 512u);
    EXPECT_EQ(p.layers.at(0).predictor.rank, 8);
    EXPECT_EQ(p.weight_type, ember::DType::DTYPE_F16);
    std::remove(out.c_str());

    // Defaults: rank chosen per layer, Q8_0 predictors, and the final table on stderr.
    r = ember_test::run_process(EMBER_PROFILE_BIN, {"-m", kModel, "-f", kCorpus, "-o", out, "--tokens", "512", "-c",
                                                    "128", "-t", "2", "--epochs", "2"});
    ASSERT_EQ(r.rc, 0) << r.err;
    p = ember::profile_read(out);
    EXPECT_EQ(p.weight_type, ember::DType::DTYPE_Q8_0);
    for (const char* s : {"layer  rank", "pred.KiB", "of dense", "rank   32:"})
        EXPECT_NE(r.err.find(s), std::string::npos) << "stderr lacks \"" << s << "\":\n" << r.err;
    std::remove(out.c_str());

    // --rank 16 does not fill Q8_0 blocks of 32.
    const std::vector<std::vector<std::string>> bad_args = {
        {"--rank", "16"}, {"--rank", "wide"}, {"--rank", "0"}, {"--predictor-type", "q4_0"}, {"--train-on", "tpu"},
        {"--train-on", "gpu", "-ngl", "0"}};
    for (const std::vector<std::string>& bad : bad_args) {
        std::vector<std::string> argv = {"-m", kModel, "-f", kCorpus, "-o", out};
        argv.insert(argv.end(), bad.begin(), bad.end());
        r = ember_test::run_process(EMBER_PROFILE_BIN, argv);
        EXPECT_NE(r.rc, 0) << bad[0] << " " << bad[1];
        EXPECT_NE(r.err.find(bad[0]), std::string::npos) << r.err;
        EXPECT_NE(r.err.find(bad[1]), std::string::npos) << r.err;
        EXPECT_FALSE(file_exists(out));
    }

    const std::string missing = temp_path("no-such-corpus.txt");
    r = ember_test::run_process(EMBER_PROFILE_BIN, {"-m", kModel, "-f", missing, "-o", out});
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
    EXPECT_FALSE(file_exists(out));
}

}  // namespace
