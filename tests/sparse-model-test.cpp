// The sparse FFN wired into the model (models/llama-sparse.h): a profile given at load makes decode steps run the
// predictor and the sparse operators, and batches run the predicted rows through the batch operator (or, when the
// predictor marks half the neurons or more, the dense GEMMs with its mask). Checked on stories260K made ReGLU (F32
// weights, so the sparse and dense paths can be compared tightly) with constructed profiles whose predictors mark
// every neuron, none, or a random part.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/ember.h"
#include "kernels-cpu/dtype.h"
#include "models/llama-sparse.h"
#include "models/synth.h"
#include "predictor/profile.h"
#include "tests/model-edit.h"

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";
const std::vector<int32_t> kPrompt = {1, 400, 31, 90, 7, 211, 46, 300, 12, 88, 129, 5};

// stories260K with the ReGLU FFN, written once per test binary.
const std::string& relu_model_path() {
    static const std::string path = [] {
        auto src = ember::GGUFFile::open(kModel);
        ember_test::ModelEdit e;
        e.set_kv["ember.ffn_activation"] = ember_test::value_string("relu");
        const std::string p = ember_test::temp_path("sparse-relu.gguf");
        ember_test::write_edited_copy(*src, p, e);
        return p;
    }();
    return path;
}

// A profile whose predictors score every neuron 0 (zero weights): threshold below 0 marks all active, above none.
std::string write_constant_profile(const ember::ModelInfo& info, float threshold, ember::DType type,
                                   const std::string& name, int n_layers = -1) {
    ember::ModelProfile p;
    p.model_name = info.name;
    p.n_layers = n_layers < 0 ? info.n_layers : n_layers;
    p.dim = info.dim;
    p.n_ff = info.n_ff;
    p.weight_type = type;
    p.layers.resize(p.n_layers);
    for (ember::LayerProfile& l : p.layers) {
        l.predictor.dim = info.dim;
        l.predictor.rank = 32;
        l.predictor.n_ff = info.n_ff;
        l.predictor.threshold = threshold;
        l.predictor.fc1.assign((size_t)32 * info.dim, 0.0f);
        l.predictor.fc2.assign((size_t)info.n_ff * 32, 0.0f);
        l.sparsity = l.recall = l.precision = 0.5f;
    }
    const std::string path = ember_test::temp_path(name);
    ember::profile_write(p, path, type);
    return path;
}

// A profile with random predictor weights (F32): the threshold sets how many neurons they mark.
std::string write_random_profile(const ember::ModelInfo& info, float threshold, const std::string& name) {
    ember::ModelProfile p;
    p.model_name = info.name;
    p.n_layers = info.n_layers;
    p.dim = info.dim;
    p.n_ff = info.n_ff;
    p.weight_type = ember::DType::DTYPE_F32;
    p.layers.resize(p.n_layers);
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (ember::LayerProfile& l : p.layers) {
        l.predictor.dim = info.dim;
        l.predictor.rank = 16;
        l.predictor.n_ff = info.n_ff;
        l.predictor.threshold = threshold;
        l.predictor.fc1.resize((size_t)16 * info.dim);
        l.predictor.fc2.resize((size_t)info.n_ff * 16);
        for (float& v : l.predictor.fc1) v = nd(rng) / std::sqrt((float)info.dim);
        for (float& v : l.predictor.fc2) v = nd(rng) / 4.0f;
        l.sparsity = l.recall = l.precision = 0.5f;
    }
    const std::string path = ember_test::temp_path(name);
    ember::profile_write(p, path, ember::DType::DTYPE_F32);
    return path;
}

std::unique_ptr<ember::Model> load(const std::string& profile = "") {
    ember::ModelParams mp;
    mp.path = relu_model_path();
    mp.profile_path = profile;
    return ember::Model::load(mp);
}

// Logits of every prompt position, evaluated one token at a time (decode steps) or as one batch.
std::vector<std::vector<float>> run(const ember::Model& m, bool one_at_a_time, int n_threads = 2,
                                    ember::SparseFfnStats* stats = nullptr) {
    ember::SessionParams sp;
    sp.n_ctx = 64;
    sp.n_threads = n_threads;
    ember::Session s(m, sp);
    std::vector<std::vector<float>> out;
    const int n_vocab = m.info().n_vocab;
    if (one_at_a_time) {
        for (int32_t t : kPrompt) {
            s.eval({t});
            out.emplace_back(s.logits(), s.logits() + n_vocab);
        }
    } else {
        s.eval(kPrompt, true);
        for (size_t i = 0; i < kPrompt.size(); i++) out.emplace_back(s.logits((int)i), s.logits((int)i) + n_vocab);
    }
    if (stats) *stats = s.sparse_stats();
    return out;
}

float max_abs_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
    float m = 0.0f;
    for (size_t i = 0; i < a.size(); i++)
        for (size_t v = 0; v < a[i].size(); v++) m = std::max(m, std::fabs(a[i][v] - b[i][v]));
    return m;
}

// Every neuron predicted active: the sparse operators compute the dense FFN (the transposed down projection, the
// compact h and the ReLU skip included), so decode logits match the dense model's to float rounding.
TEST(SparseModel, AllActivePredictorMatchesDenseDecode) {
    auto dense = load();
    for (ember::DType type : {ember::DType::DTYPE_F32, ember::DType::DTYPE_F16}) {
        auto sparse = load(write_constant_profile(dense->info(), -1.0f, type, "all-active.gguf"));
        ASSERT_TRUE(sparse->sparse());
        EXPECT_FALSE(dense->sparse());
        EXPECT_GT(sparse->predictor_bytes(), 0u);
        const auto want = run(*dense, true), got = run(*sparse, true);
        EXPECT_LT(max_abs_diff(want, got), 1e-4f) << ember::dtype_name(type);
    }
}

// Batches compute all neurons and mask: with nothing masked they are the dense batch exactly.
TEST(SparseModel, AllActivePredictorLeavesBatchesUnchanged) {
    auto dense = load();
    auto sparse = load(write_constant_profile(dense->info(), -1.0f, ember::DType::DTYPE_F32, "all-active-b.gguf"));
    EXPECT_EQ(max_abs_diff(run(*dense, false), run(*sparse, false)), 0.0f);
}

// A predictor marking part of the neurons: a prompt in one batch goes through the batch operator (each token's
// predicted rows, the decode step's dot products), so its logits are the decode steps' (bit for bit below 8
// threads) and the same neurons are predicted and fired, for 1, 2 and 8 threads.
TEST(SparseModel, PartialPredictorBatchMatchesDecode) {
    auto dense = load();
    auto sparse = load(write_random_profile(dense->info(), 0.5f, "random-part.gguf"));
    for (int threads : {1, 2, 8}) {
        SCOPED_TRACE(std::to_string(threads) + " threads");
        ember::SparseFfnStats ds, bs;
        const auto decode = run(*sparse, true, threads, &ds), batch = run(*sparse, false, threads, &bs);
        const double share = ds.predicted_share();
        std::printf("%d threads: predicted share %.3f (batch %.3f), fired %llu vs %llu, max |logit diff| %.2e\n",
                    threads, share, bs.predicted_share(), (unsigned long long)ds.fired, (unsigned long long)bs.fired,
                    max_abs_diff(decode, batch));
        ASSERT_GT(share, 0.05);  // the batch operator's side of the choice, not the dense GEMMs'
        ASSERT_LT(share, 0.45);
        EXPECT_EQ(bs.predicted, ds.predicted);
        EXPECT_EQ(bs.fired, ds.fired);
        EXPECT_EQ(bs.neurons, ds.neurons);
        // Below 8 threads a decode step takes sparse_gate_up then sparse_down, whose bits the batch operator gives
        // per token (the dense GEMMs would not); from 8 the one-pass sparse_ffn sums in another order.
        if (threads < 8)
            EXPECT_EQ(max_abs_diff(decode, batch), 0.0f);
        else
            EXPECT_LT(max_abs_diff(decode, batch), 1e-4f);
        EXPECT_GT(max_abs_diff(decode, run(*dense, true, threads)), 1e-2f);  // the predictor does mask neurons
    }
}

// No neuron predicted active: the FFN adds nothing, in the decode path and the batch path alike, and the logits
// then differ from the dense model's.
TEST(SparseModel, NoActiveNeuronSkipsTheFfnInBothPaths) {
    auto dense = load();
    auto sparse = load(write_constant_profile(dense->info(), 1.0f, ember::DType::DTYPE_F32, "none-active.gguf"));
    ember::SparseFfnStats decode_stats, batch_stats;
    const auto decode = run(*sparse, true, 2, &decode_stats), batch = run(*sparse, false, 2, &batch_stats);
    EXPECT_LT(max_abs_diff(decode, batch), 1e-4f);
    EXPECT_GT(max_abs_diff(decode, run(*dense, true)), 0.1f);
    EXPECT_EQ(decode_stats.predicted, 0u);
    EXPECT_EQ(decode_stats.fired, 0u);
    EXPECT_EQ(batch_stats.predicted, 0u);
    // A decode step then reads everything but the FFN, plus the predictors.
    const ember::ModelInfo& info = sparse->info();
    EXPECT_EQ(decode_stats.decode_tokens, kPrompt.size());
    EXPECT_DOUBLE_EQ(decode_stats.bytes_per_decode_token(),
                     (double)(info.weight_bytes_per_token - info.ffn_bytes_per_token + sparse->predictor_bytes()));
}

// The counters: every neuron predicted, the ReLU zeros among them not fired; bytes follow the rows read.
TEST(SparseModel, StatsCountNeuronsAndBytes) {
    auto dense = load();
    auto sparse = load(write_constant_profile(dense->info(), -1.0f, ember::DType::DTYPE_F32, "all-active-s.gguf"));
    const ember::ModelInfo& info = sparse->info();
    ember::SparseFfnStats s;
    run(*sparse, true, 1, &s);
    const uint64_t n = kPrompt.size();
    EXPECT_EQ(s.tokens, n);
    EXPECT_EQ(s.decode_tokens, n);
    EXPECT_EQ(s.neurons, n * info.n_layers * info.n_ff);
    EXPECT_EQ(s.predicted, s.neurons);
    EXPECT_GT(s.fired, s.neurons / 10);  // ReLU: some fire ...
    EXPECT_LT(s.fired, s.neurons);       // ... and some do not
    // F32 weights: gate rows of every predicted neuron, up and down rows of those that fired.
    const uint64_t row = (uint64_t)info.dim * 4;
    const uint64_t want = n * (info.weight_bytes_per_token - info.ffn_bytes_per_token + sparse->predictor_bytes()) +
                          s.predicted * row + s.fired * 2 * row;
    EXPECT_EQ(s.decode_weight_bytes, want);
    // Batches count neurons but no decode bytes.
    run(*sparse, false, 1, &s);
    EXPECT_EQ(s.tokens, n);
    EXPECT_EQ(s.decode_tokens, 0u);
    EXPECT_EQ(s.predicted, s.neurons);
}

// The decode path gives the same logits for any thread count.
TEST(SparseModel, DecodeIndependentOfThreadCount) {
    auto dense = load();
    auto sparse = load(write_constant_profile(dense->info(), -1.0f, ember::DType::DTYPE_F32, "all-active-t.gguf"));
    const auto one = run(*sparse, true, 1), three = run(*sparse, true, 3);
    EXPECT_LT(max_abs_diff(one, three), 1e-5f);
    // From 8 threads float rows take the one-pass sparse_ffn (llama_sparse_rows): the same logits, and still the
    // dense model's.
    const auto eight = run(*sparse, true, 8);
    EXPECT_LT(max_abs_diff(one, eight), 1e-5f);
    EXPECT_LT(max_abs_diff(run(*dense, true, 8), eight), 1e-4f);
}

// Quantized rows take the one-pass sparse_ffn on 8+ threads once a layer's predicted gate rows reach 3 MiB
// (llama_sparse_rows): a Q8_0 layer of 8192 neurons of width 512, all predicted (4.25 MiB of gate rows), decodes to
// logits within rounding of the two-call path on 2 threads and of the dense model.
TEST(SparseModel, QuantizedOnePassMatchesTwoCallsAndDense) {
    ember::SynthParams p;
    p.dim = 512;
    p.n_layers = 2;
    p.n_ff = 8192;
    p.n_heads = 8;
    p.n_kv_heads = 8;
    p.type = ember::DType::DTYPE_Q8_0;
    p.gate_rank = 16;
    p.calib_tokens = 32;
    p.vocab_from = std::string(EMBER_SOURCE_DIR) + "/models/ggml-vocab-llama-spm.gguf";
    p.n_threads = 2;
    const std::string path = ember_test::temp_path("q8-wide.gguf");
    ember::synth_write(p, path);
    ember::ModelParams mp;
    mp.path = path;
    auto dense = ember::Model::load(mp);
    mp.profile_path = write_constant_profile(dense->info(), -1.0f, ember::DType::DTYPE_F32, "q8-wide-all.gguf");
    auto sparse = ember::Model::load(mp);
    ember::SparseFfnStats s;
    const auto two = run(*sparse, true, 2), eight = run(*sparse, true, 8, &s), ref = run(*dense, true, 8);
    // Every neuron predicted: the gate rows read per layer and token are past the one-pass threshold, so 8 threads
    // take the one pass and 2 the two calls. (Whether the logits differ at all depends on the rounding of the host's
    // sums: few neurons fire per chunk here, and on some processors the two orders give the same bits.)
    const uint64_t per_layer = s.predicted / s.tokens / (uint64_t)p.n_layers;
    EXPECT_GE(per_layer * ember::dtype_row_bytes(p.type, p.dim), 3u << 20);
    EXPECT_TRUE(ember::llama_sparse_rows_one_pass(p.type, p.dim, (int64_t)per_layer, 8));
    EXPECT_FALSE(ember::llama_sparse_rows_one_pass(p.type, p.dim, (int64_t)per_layer, 2));
    float scale = 0.0f;
    for (const auto& row : ref)
        for (float v : row) scale = std::max(scale, std::fabs(v));
    // The two paths add the down rows in different orders (slices of y against per-chunk partial sums): the
    // logits differ by rounding only.
    EXPECT_LT(max_abs_diff(two, eight), 3e-3f * scale);
    EXPECT_LT(max_abs_diff(ref, eight), 2e-2f * scale);  // dense: down rows requantized by the transposed copy
    std::remove(path.c_str());
}

// The one pass: float rows from 8 threads on; quantized rows from 8 threads once the listed gate rows reach 3 MiB.
TEST(SparseModel, OnePassTakesFloatRowsAndLongQuantizedLists) {
    using ember::DType;
    EXPECT_TRUE(ember::llama_sparse_rows_one_pass(DType::DTYPE_F16, 4096, 1, 8));
    EXPECT_TRUE(ember::llama_sparse_rows_one_pass(DType::DTYPE_F32, 4096, 1, 16));
    EXPECT_TRUE(ember::llama_sparse_rows_one_pass(DType::DTYPE_BF16, 4096, 1, 8));
    EXPECT_FALSE(ember::llama_sparse_rows_one_pass(DType::DTYPE_F16, 4096, 100000, 7));
    // Q8_0 rows of 512 are 544 bytes: 5782 of them stay under 3 MiB, 5783 reach it.
    const int64_t at = ((3 << 20) + 543) / 544;
    EXPECT_FALSE(ember::llama_sparse_rows_one_pass(DType::DTYPE_Q8_0, 512, at - 1, 8));
    EXPECT_TRUE(ember::llama_sparse_rows_one_pass(DType::DTYPE_Q8_0, 512, at, 8));
    EXPECT_FALSE(ember::llama_sparse_rows_one_pass(DType::DTYPE_Q8_0, 512, at, 2));
    EXPECT_TRUE(ember::llama_sparse_rows_one_pass(DType::DTYPE_Q4_0, 8192, ((3 << 20) + 4607) / 4608, 16));
    EXPECT_FALSE(ember::llama_sparse_rows_one_pass(DType::DTYPE_Q4_0, 8192, 500, 16));  // a 70B hybrid's cold list
}

// A profile of another model is refused at load, naming the profile file and what differs.
TEST(SparseModel, MismatchedProfileIsAnError) {
    auto dense = load();
    const std::string path =
        write_constant_profile(dense->info(), -1.0f, ember::DType::DTYPE_F32, "wrong-layers.gguf", 3);
    try {
        load(path);
        FAIL() << "expected an error";
    } catch (const ember::Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
        EXPECT_NE(msg.find("layers"), std::string::npos) << msg;
    }
}

TEST(SparseModel, MissingProfileFileIsAnError) {
    try {
        load("/nonexistent/profile.gguf");
        FAIL() << "expected an error";
    } catch (const ember::Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/profile.gguf"), std::string::npos) << e.what();
    }
}

}  // namespace
