// The offline profiler on models/tiny-relu-q8_0.gguf over ~1024 tokens of docs/user-guide.md, with a small
// predictor (rank 16, 10 epochs) to stay fast: the library (profile_model) and the app (ember-profile).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "engine/ember.h"
#include "engine/ffn-stats.h"
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
    p.train.rank = 16;
    p.train.epochs = 10;
    p.train.recall_target = kRecall;
    const ember::ModelProfile prof = ember::profile_model(*model, tokens, p);
    const std::string path = temp_path("tiny.profile.gguf");
    ember::profile_write(prof, path);
    EXPECT_FALSE(file_exists(path + ".tmp"));

    const ember::ModelProfile back = ember::profile_read(path);
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
        EXPECT_EQ(lp.predictor.rank, 16);
        EXPECT_EQ(lp.predictor.dim, info.dim);
        EXPECT_GE(lp.recall, kRecall - 0.01f) << "layer " << l;
        EXPECT_GT(lp.precision, 0.0f) << "layer " << l;
        // Trained on the true FFN input x_in, even this small predictor skips a good share of neurons (about a third
        // at 30 epochs, rank 32); it cannot skip more than the truly silent ones at recall ~1.
        EXPECT_GT(lp.sparsity, 0.05f) << "layer " << l;
        EXPECT_LE(lp.sparsity, sparsity + 0.05) << "layer " << l;
        std::printf("layer %d: true sparsity %.4f, freq mean %.4f, predictor recall %.4f precision %.4f "
                    "sparsity %.4f\n", l, sparsity, mean, lp.recall, lp.precision, lp.sparsity);
    }
    std::remove(path.c_str());
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
                            "--rank", "8", "--epochs", "2", "--recall", "0.95"});
    ASSERT_EQ(r.rc, 0) << r.err;
    const ember::ModelProfile p = ember::profile_read(out);
    EXPECT_EQ(p.n_tokens, 512u);
    EXPECT_EQ(p.layers.at(0).predictor.rank, 8);
    std::remove(out.c_str());

    const std::string missing = temp_path("no-such-corpus.txt");
    r = ember_test::run_process(EMBER_PROFILE_BIN, {"-m", kModel, "-f", missing, "-o", out});
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
    EXPECT_FALSE(file_exists(out));
}

}  // namespace
