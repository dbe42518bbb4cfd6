// ember-synth (models/synth.h): the two properties DESIGN.md asks of synthetic test models, measured through the
// engine on tokens the generator never saw: per-layer sparsity and hot share of the dense forward pass, and the
// gate's low-rank-plus-noise structure; also determinism, parameter errors and the binary's flags.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/ember.h"
#include "kernels-cpu/quant.h"
#include "kernels-cpu/thread-pool.h"
#include "models/synth.h"
#include "predictor/profile.h"

namespace {

using ember::DType;
using ember::SynthParams;

const std::string kVocab = std::string(EMBER_SOURCE_DIR) + "/models/ggml-vocab-llama-spm.gguf";

// Text the generator never saw, tokenized by the model's own tokenizer.
const char* kText =
    "The harbour was quiet before dawn. A few boats rocked against the pier, their ropes creaking, and the smell "
    "of salt and diesel hung over the water. Marta checked the weather report twice, folded the chart into her "
    "coat and walked down to the red boat at the end of the row. Her brother had promised to meet her at six, but "
    "he was late again, as he had been every morning since the spring. She started the engine, listened to it "
    "cough and settle, and decided that this time she would leave without him. The sea outside the breakwater was "
    "grey and calm, and far to the east a thin line of light was opening between the clouds and the horizon.";

std::string temp_path(const std::string& name) {
    return ::testing::TempDir() + "ember-synth-" + std::to_string(getpid()) + "-" + name + ".gguf";
}

SynthParams small_model(DType type, float sparsity, float hot_share) {
    SynthParams p;
    p.dim = 256;
    p.n_layers = 5;
    p.n_ff = 1024;
    p.n_heads = 8;
    p.n_kv_heads = 4;  // grouped-query attention on the way
    p.type = type;
    p.sparsity = sparsity;
    p.hot_share = hot_share;
    p.seed = 7;
    p.vocab_from = kVocab;
    p.n_threads = 2;
    return p;
}

std::vector<uint8_t> slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

struct Measured {
    std::vector<double> sparsity, hot_share;  // per layer
    int n_tokens = 0;
};

// Counts, per layer and neuron, the tokens for which h != 0 over a random-token sequence and a text.
Measured measure(const std::string& path) {
    ember::ModelParams mp;
    mp.path = path;
    auto model = ember::Model::load(mp);
    const ember::ModelInfo& info = model->info();
    EXPECT_EQ(info.ffn_act, "relu");
    ember::SessionParams sp;
    sp.n_ctx = 512;
    sp.n_threads = 2;
    ember::Session s(*model, sp);
    std::vector<std::vector<int64_t>> count(info.n_layers, std::vector<int64_t>(info.n_ff, 0));
    int n_tokens = 0;
    s.set_ffn_observer([&](int layer, const float*, int, const float* h, int n, int n_ff) {
        for (int t = 0; t < n; t++)
            for (int i = 0; i < n_ff; i++) count[layer][i] += h[(size_t)t * n_ff + i] != 0.0f;
        if (layer == 0) n_tokens += n;
    });
    std::mt19937 rng(12345);
    std::vector<int32_t> random_ids{model->tokenizer().bos()};
    for (int i = 0; i < 300; i++) random_ids.push_back((int32_t)(rng() % (uint32_t)info.n_vocab));
    s.eval(random_ids);
    s.reset();
    s.eval(model->tokenizer().encode(kText, true, false));

    Measured m;
    m.n_tokens = n_tokens;
    for (auto& c : count) {
        int64_t total = 0;
        for (int64_t v : c) total += v;
        std::sort(c.begin(), c.end(), std::greater<int64_t>());
        int64_t top = 0;
        for (int i = 0; i < ember::synth_hot_count(info.n_ff); i++) top += c[i];
        m.sparsity.push_back(1.0 - (double)total / ((double)n_tokens * info.n_ff));
        m.hot_share.push_back(total ? (double)top / total : 0.0);
    }
    return m;
}

// Eigenvalues of a symmetric n x n matrix (row-major), largest first: cyclic Jacobi rotations.
std::vector<double> sym_eigenvalues(std::vector<double> a, int n) {
    for (int sweep = 0; sweep < 60; sweep++) {
        double off = 0, diag = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) (i == j ? diag : off) += a[(size_t)i * n + j] * a[(size_t)i * n + j];
        if (off <= 1e-24 * diag) break;
        for (int p = 0; p < n - 1; p++)
            for (int q = p + 1; q < n; q++) {
                const double apq = a[(size_t)p * n + q];
                if (std::fabs(apq) < 1e-300) continue;
                const double theta = (a[(size_t)q * n + q] - a[(size_t)p * n + p]) / (2 * apq);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
                const double c = 1 / std::sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) {
                    const double akp = a[(size_t)k * n + p], akq = a[(size_t)k * n + q];
                    a[(size_t)k * n + p] = c * akp - s * akq;
                    a[(size_t)k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {
                    const double apk = a[(size_t)p * n + k], aqk = a[(size_t)q * n + k];
                    a[(size_t)p * n + k] = c * apk - s * aqk;
                    a[(size_t)q * n + k] = s * apk + c * aqk;
                }
            }
    }
    std::vector<double> ev(n);
    for (int i = 0; i < n; i++) ev[i] = a[(size_t)i * n + i];
    std::sort(ev.begin(), ev.end(), std::greater<double>());
    return ev;
}

TEST(SynthTargets, PowerLawMeetsMeanAndHotShare) {
    struct Case {
        int n_ff;
        double sparsity, hot_share;
    };
    for (const Case c : {Case{1024, 0.9, 0.8}, Case{11008, 0.9, 0.8}, Case{1024, 0.8, 0.6}, Case{28672, 0.95, 0.9},
                         Case{4096, 0.5, 0.35}, Case{1000, 0.9, 0.2}}) {
        SCOPED_TRACE("n_ff " + std::to_string(c.n_ff) + ", sparsity " + std::to_string(c.sparsity) + ", hot share " +
                     std::to_string(c.hot_share));
        const std::vector<double> p = ember::synth_firing_targets(c.n_ff, c.sparsity, c.hot_share);
        ASSERT_EQ((int)p.size(), c.n_ff);
        double sum = 0, top = 0;
        for (int j = 0; j < c.n_ff; j++) {
            sum += p[j];
            if (j < ember::synth_hot_count(c.n_ff)) top += p[j];
            EXPECT_GT(p[j], 0.0);
            EXPECT_LT(p[j], 1.0);
            if (j) {
                EXPECT_LE(p[j], p[j - 1]);
            }
        }
        EXPECT_NEAR(sum / c.n_ff, 1 - c.sparsity, 1e-6);
        EXPECT_NEAR(top / sum, c.hot_share, 1e-3);
    }
}

TEST(SynthTargets, UnreachableTargetsAreRefused) {
    auto message = [](double s, double h) {
        try {
            ember::synth_firing_targets(1024, s, h);
        } catch (const ember::Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(message(0.9, 0.1).find("--hot-share: value 0.1 is below 0.2"), std::string::npos) << message(0.9, 0.1);
    // 70% of neurons firing per token: the hottest 20% can hold at most 0.2 * 0.995 / 0.7 of the firings.
    EXPECT_NE(message(0.3, 0.8).find("cannot be reached with --sparsity 0.3"), std::string::npos) << message(0.3, 0.8);
    EXPECT_NE(message(1.0, 0.8).find("--sparsity: value 1 outside"), std::string::npos) << message(1.0, 0.8);
    EXPECT_NE(message(-0.5, 0.8).find("--sparsity"), std::string::npos);
}

struct StatsCase {
    DType type;
    float sparsity, hot_share;
};

class SynthStats : public ::testing::TestWithParam<StatsCase> {};

// Property 1: per layer, the dense forward pass's sparsity within 2 points and hot share within 5 points of the
// targets, on 300 random tokens and a tokenized English text, neither seen by the calibration.
TEST_P(SynthStats, DenseForwardMeetsTargetsPerLayer) {
    const StatsCase c = GetParam();
    const SynthParams p = small_model(c.type, c.sparsity, c.hot_share);
    const std::string path = temp_path("stats");
    const ember::SynthReport r = ember::synth_write(p, path);
    ASSERT_EQ((int)r.layers.size(), p.n_layers);
    const Measured m = measure(path);
    ASSERT_EQ((int)m.sparsity.size(), p.n_layers);
    std::printf("%s sparsity %.2f hot share %.2f, %d tokens:\n", ember::dtype_name(c.type), c.sparsity, c.hot_share,
                m.n_tokens);
    for (int l = 0; l < p.n_layers; l++) {
        std::printf("  layer %d: sparsity %.4f (calibration %.4f), hot share %.4f (calibration %.4f), rank-%d recall "
                    "%.3f (cold %.3f)\n",
                    l, m.sparsity[l], r.layers[l].sparsity, m.hot_share[l], r.layers[l].hot_share, r.gate_rank + 1,
                    r.layers[l].lowrank_recall, r.layers[l].lowrank_recall_cold);
        EXPECT_NEAR(m.sparsity[l], c.sparsity, 0.02) << "layer " << l;
        EXPECT_NEAR(m.hot_share[l], c.hot_share, 0.05) << "layer " << l;
    }
    std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Targets, SynthStats,
                         ::testing::Values(StatsCase{DType::DTYPE_F16, 0.9f, 0.8f},
                                           StatsCase{DType::DTYPE_Q4_0, 0.9f, 0.8f},
                                           StatsCase{DType::DTYPE_F16, 0.8f, 0.6f},
                                           StatsCase{DType::DTYPE_Q4_0, 0.8f, 0.6f}));

TEST(Synth, FileIsAStandardLlamaGGUF) {
    SynthParams p = small_model(DType::DTYPE_Q8_0, 0.9f, 0.8f);
    p.n_layers = 2;
    const std::string path = temp_path("keys");
    ember::synth_write(p, path);
    auto f = ember::GGUFFile::open(path);
    EXPECT_EQ(f->get_string("general.architecture"), "llama");
    EXPECT_EQ(f->get_u32("general.file_type"), 7u);  // LLAMA_FTYPE_MOSTLY_Q8_0
    EXPECT_EQ(f->get_u32("llama.embedding_length"), 256u);
    EXPECT_EQ(f->get_u32("llama.block_count"), 2u);
    EXPECT_EQ(f->get_u32("llama.feed_forward_length"), 1024u);
    EXPECT_EQ(f->get_u32("llama.attention.head_count_kv"), 4u);
    EXPECT_EQ(f->get_u32("llama.vocab_size"), 32000u);
    EXPECT_EQ(f->get_string("ember.ffn_activation"), "relu");
    EXPECT_FLOAT_EQ(f->get_f32("ember.synth.sparsity"), 0.9f);
    EXPECT_FLOAT_EQ(f->get_f32("ember.synth.hot_share"), 0.8f);
    EXPECT_EQ(f->get_u64("ember.synth.seed"), 7u);
    EXPECT_EQ(f->get_u32("ember.synth.gate_rank"), 16u);
    EXPECT_EQ(f->get_string("tokenizer.ggml.model"), "llama");
    EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens").size(), 32000u);
    const char* names[] = {"token_embd.weight", "output_norm.weight", "output.weight", "blk.1.attn_norm.weight",
                           "blk.1.attn_q.weight", "blk.1.attn_k.weight", "blk.1.attn_v.weight",
                           "blk.1.attn_output.weight", "blk.1.ffn_norm.weight", "blk.1.ffn_gate.weight",
                           "blk.1.ffn_up.weight", "blk.1.ffn_down.weight"};
    for (const char* n : names) EXPECT_NE(f->find_tensor(n), nullptr) << n;
    EXPECT_EQ(f->tensors().size(), 3u + 2u * 9u);
    EXPECT_EQ(f->find_tensor("blk.0.attn_k.weight")->ne[1], 128);  // kv_dim = 4 heads * 32
    EXPECT_EQ(f->find_tensor("blk.0.ffn_down.weight")->ne[0], 1024);
    std::remove(path.c_str());
}

TEST(Synth, SameSeedSameBytesAnyThreadCount) {
    SynthParams p = small_model(DType::DTYPE_Q4_0, 0.9f, 0.8f);
    p.n_layers = 3;
    const std::string a = temp_path("det-a"), b = temp_path("det-b"), c = temp_path("det-c");
    ember::synth_write(p, a);
    p.n_threads = 1;
    ember::synth_write(p, b);
    p.seed = 8;
    ember::synth_write(p, c);
    const std::vector<uint8_t> ba = slurp(a), bb = slurp(b), bc = slurp(c);
    ASSERT_FALSE(ba.empty());
    EXPECT_TRUE(ba == bb) << "seed 7 with 2 threads and with 1 thread gave different bytes";
    ASSERT_EQ(ba.size(), bc.size());
    size_t differ = 0;
    for (size_t i = 0; i < ba.size(); i++) differ += ba[i] != bc[i];
    EXPECT_GT(differ, ba.size() / 2) << "seeds 7 and 8 share too many bytes";
    for (const std::string& s : {a, b, c}) std::remove(s.c_str());
}

// Property 2: W_gate = A·B + E + a u^T has r0 + 1 large singular values, a flat noise floor beyond them (about
// Marchenko-Pastur's edge for E), and the low-rank part alone predicts which neurons fire on the FFN inputs.
TEST(Synth, GateIsLowRankPlusNoise) {
    SynthParams p = small_model(DType::DTYPE_F16, 0.9f, 0.8f);
    p.n_layers = 3;
    const std::string path = temp_path("rank");
    const ember::SynthReport r = ember::synth_write(p, path);
    auto f = ember::GGUFFile::open(path);
    const int r0 = (int)f->get_u32("ember.synth.gate_rank"), dim = p.dim, n_ff = p.n_ff;
    ASSERT_EQ(r0, dim / 16);
    for (int l : {0, p.n_layers - 1}) {
        const ember::GGUFTensorInfo* t = f->find_tensor("blk." + std::to_string(l) + ".ffn_gate.weight");
        ASSERT_NE(t, nullptr);
        std::vector<float> w((size_t)n_ff * dim);
        const uint8_t* rows = (const uint8_t*)t->data;
        for (int i = 0; i < n_ff; i++)
            ember::dequantize_row(DType::DTYPE_F16, rows + (size_t)i * dim * 2, w.data() + (size_t)i * dim, dim);
        std::vector<double> gram((size_t)dim * dim, 0.0);  // W^T W: its eigenvalues are W's squared singular values
        for (int i = 0; i < n_ff; i++) {
            const float* row = w.data() + (size_t)i * dim;
            for (int a = 0; a < dim; a++)
                for (int b = a; b < dim; b++) gram[(size_t)a * dim + b] += (double)row[a] * row[b];
        }
        for (int a = 0; a < dim; a++)
            for (int b = 0; b < a; b++) gram[(size_t)a * dim + b] = gram[(size_t)b * dim + a];
        const std::vector<double> ev = sym_eigenvalues(gram, dim);
        double total = 0, head = 0;
        for (int k = 0; k < dim; k++) total += ev[k], head += k <= r0 ? ev[k] : 0;
        const double noise_edge = p.gate_noise / dim * std::pow(std::sqrt((double)n_ff) + std::sqrt((double)dim), 2);
        std::printf("layer %d: sigma^2 [0] %.2f [%d] %.2f [%d] %.3f [%d] %.3f, noise edge %.3f, top-%d energy %.4f\n",
                    l, ev[0], r0, ev[r0], r0 + 1, ev[r0 + 1], dim - 1, ev[dim - 1], noise_edge, r0 + 1, head / total);
        EXPECT_GT(head / total, 1.0 - p.gate_noise - 0.01) << "layer " << l;
        EXPECT_LT(ev[r0 + 1], 0.05 * ev[r0]) << "layer " << l << ": no gap after r0 + 1 singular values";
        EXPECT_LT(ev[r0 + 1], 1.5 * noise_edge) << "layer " << l << ": the tail is above E's noise floor";
        // What the generator measured on its calibration tokens' FFN inputs.
        EXPECT_GT(r.layers[l].lowrank_recall, 0.8) << "layer " << l;
        EXPECT_GT(r.layers[l].lowrank_precision, 0.8) << "layer " << l;
        EXPECT_GT(r.layers[l].lowrank_recall_cold, 0.6) << "layer " << l;
    }
    // Control: with mostly full-rank noise, the rank-(r0 + 1) part predicts cold neurons poorly.
    p.gate_noise = 0.8f;
    const ember::SynthReport noisy = ember::synth_write(p, path);
    EXPECT_LT(noisy.layers[1].lowrank_recall_cold, r.layers[1].lowrank_recall_cold - 0.2);
    std::remove(path.c_str());
}

std::string error_of(const SynthParams& p) {
    try {
        ember::synth_validate(p);
    } catch (const ember::Error& e) {
        return e.what();
    }
    return "no error";
}

TEST(Synth, BadParametersNameTheFlag) {
    const SynthParams ok = small_model(DType::DTYPE_Q4_0, 0.9f, 0.8f);
    EXPECT_EQ(error_of(ok), "no error");
    SynthParams p = ok;
    p.dim = 250;
    EXPECT_NE(error_of(p).find("--dim 250 is not a multiple of --heads 8"), std::string::npos) << error_of(p);
    p = ok, p.dim = 48, p.n_heads = 4, p.n_kv_heads = 4;
    EXPECT_NE(error_of(p).find("--dim 48 is not a multiple of 32, the block size of --type q4_0"), std::string::npos)
        << error_of(p);
    p = ok, p.n_ff = 1000;
    EXPECT_NE(error_of(p).find("--n-ff 1000 is not a multiple of 32"), std::string::npos) << error_of(p);
    p = ok, p.n_kv_heads = 3;
    EXPECT_NE(error_of(p).find("--heads 8 is not a multiple of --kv-heads 3"), std::string::npos) << error_of(p);
    p = ok, p.gate_noise = 1.0f;
    EXPECT_NE(error_of(p).find("--gate-noise: value 1 outside [0, 1)"), std::string::npos) << error_of(p);
    p = ok, p.gate_rank = 200;
    EXPECT_NE(error_of(p).find("--gate-rank: value 200 outside [1, 128]"), std::string::npos) << error_of(p);
    p = ok, p.n_layers = 0;
    EXPECT_NE(error_of(p).find("--layers: value 0 outside"), std::string::npos) << error_of(p);
    p = ok, p.hot_share = 0.99f, p.sparsity = 0.5f;
    EXPECT_NE(error_of(p).find("--hot-share: value 0.99 cannot be reached"), std::string::npos) << error_of(p);
    p = ok, p.vocab_from = "";
    EXPECT_NE(error_of(p).find("--vocab-from"), std::string::npos) << error_of(p);

    p = ok, p.vocab_from = "/nonexistent/vocab.gguf";
    try {
        ember::synth_write(p, temp_path("never"));
        ADD_FAILURE() << "a missing vocabulary file was accepted";
    } catch (const ember::Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/vocab.gguf"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(temp_path("never")));
    SynthParams preset;
    EXPECT_THROW(ember::synth_apply_preset("30b", preset), ember::Error);
    ember::synth_apply_preset("70b", preset);
    EXPECT_EQ(preset.dim, 8192);
    EXPECT_EQ(preset.n_kv_heads, 8);
}

TEST(Synth, DefaultVocabularyLookup) {
    namespace fs = std::filesystem;
    const fs::path root = fs::path(::testing::TempDir()) / ("ember-synth-tree-" + std::to_string(getpid()));
    fs::create_directories(root / "build" / "bin");
    fs::create_directories(root / "models");
    const std::string exe = (root / "build" / "bin" / "ember-synth").string();
    // Not there yet: the error lists every place it looked.
    try {
        ember::synth_default_vocab(exe, "/nonexistent-src");
        ADD_FAILURE() << "no error for a missing vocabulary";
    } catch (const ember::Error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find((root / "models" / "ggml-vocab-llama-spm.gguf").string()), std::string::npos) << m;
        EXPECT_NE(m.find("/nonexistent-src/models/ggml-vocab-llama-spm.gguf"), std::string::npos) << m;
        EXPECT_NE(m.find("--vocab-from"), std::string::npos) << m;
    }
    // Beside the build tree, and through the source directory.
    fs::copy_file(kVocab, root / "models" / "ggml-vocab-llama-spm.gguf");
    EXPECT_EQ(ember::synth_default_vocab(exe, ""), (root / "models" / "ggml-vocab-llama-spm.gguf").string());
    EXPECT_EQ(ember::synth_default_vocab("", EMBER_SOURCE_DIR),
              (fs::path(EMBER_SOURCE_DIR) / "models" / "ggml-vocab-llama-spm.gguf").lexically_normal().string());
    fs::remove_all(root);
}

struct RunResult {
    int rc = -1;
    std::string err;
};

RunResult run_synth(const std::string& args) {
    const std::string err = ::testing::TempDir() + "ember-synth-stderr-" + std::to_string(getpid());
    const int st = std::system((std::string(EMBER_SYNTH_BIN) + " " + args + " >/dev/null 2>" + err).c_str());
    RunResult r;
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    std::ifstream in(err);
    std::stringstream ss;
    ss << in.rdbuf();
    r.err = ss.str();
    std::remove(err.c_str());
    return r;
}

TEST(SynthApp, FlagsAndErrors) {
    EXPECT_EQ(run_synth("--help").rc, 0);
    RunResult r = run_synth("--dim 64");
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.err.find("error: no output file given"), std::string::npos) << r.err;
    r = run_synth("-o " + temp_path("bad") + " --type Q5_K");
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.err.find("--type: invalid value 'Q5_K'"), std::string::npos) << r.err;
    r = run_synth("-o " + temp_path("bad") + " --preset 8b");
    EXPECT_NE(r.err.find("--preset: invalid value '8b'"), std::string::npos) << r.err;
    r = run_synth("-o " + temp_path("bad") + " --sparsity 1.5");
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.err.find("--sparsity: value 1.5 outside"), std::string::npos) << r.err;
    r = run_synth("-o " + temp_path("bad") + " --dim 64 --heads 4 --vocab-from /nonexistent/v.gguf");
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.err.find("/nonexistent/v.gguf"), std::string::npos) << r.err;

    // A preset with shape flags overriding it, the default vocabulary, a quantized type.
    const std::string out = temp_path("app");
    r = run_synth("--preset 70b --dim 64 --layers 1 --n-ff 128 --heads 4 --type q8_0 -t 2 -q --seed 3 -o " + out);
    ASSERT_EQ(r.rc, 0) << r.err;
    auto f = ember::GGUFFile::open(out);
    EXPECT_EQ(f->get_u32("llama.embedding_length"), 64u);
    EXPECT_EQ(f->get_u32("llama.block_count"), 1u);
    EXPECT_EQ(f->get_u32("llama.feed_forward_length"), 128u);
    EXPECT_EQ(f->get_u32("llama.attention.head_count"), 4u);
    EXPECT_EQ(f->get_u32("llama.attention.head_count_kv"), 4u);
    EXPECT_EQ(f->get_u64("ember.synth.seed"), 3u);
    EXPECT_EQ(f->find_tensor("output.weight")->type, (uint32_t)DType::DTYPE_Q8_0);
    std::remove(out.c_str());

    // The construction predictors' hidden activation: linear by default, relu on request, nothing else.
    r = run_synth("-o " + temp_path("bad") + " --predictor-hidden tanh");
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.err.find("--predictor-hidden: invalid value 'tanh'"), std::string::npos) << r.err;
    const std::string prof = temp_path("app-profile");
    for (const char* hidden : {"", "relu"}) {
        const std::string flag = *hidden ? std::string(" --predictor-hidden ") + hidden : "";
        r = run_synth("--dim 64 --layers 1 --n-ff 128 --heads 4 --gate-rank 20 -t 2 -q -o " + out +
                      " --predictors-out " + prof + flag);
        ASSERT_EQ(r.rc, 0) << r.err;
        const ember::ModelProfile pr = ember::profile_read(prof);
        const bool relu = *hidden != 0;
        EXPECT_STREQ(ember::predictor_hidden_name(pr.layers[0].predictor.hidden), relu ? "relu" : "linear");
        EXPECT_EQ(pr.layers[0].predictor.rank, relu ? 64 : 32);  // 2 * 21 and 21, each rounded up to 32
        const char* said =
            relu ? "construction predictors, relu, of rank 64" : "construction predictors, linear, of rank 32";
        EXPECT_NE(r.err.find(said), std::string::npos) << r.err;
    }
    std::remove(out.c_str());
    std::remove(prof.c_str());
}

}  // namespace

namespace {

// The construction predictors (SynthParams::construction_predictors): the gate's low-rank rule as a Q8_0 profile.
// It must load into the engine, keep recall on NEW tokens (not only the calibration ones it was thresholded on),
// and skip most neurons, since the rule is what the weights are built from.
TEST(Synth, ConstructionPredictorsRunSparseWithHighRecall) {
    SynthParams p = small_model(DType::DTYPE_F16, 0.9f, 0.8f);
    p.construction_predictors = true;
    const std::string path = temp_path("construction"), prof_path = temp_path("construction-profile");
    const ember::SynthReport r = ember::synth_write(p, path);
    ASSERT_EQ((int)r.predictors.size(), p.n_layers);
    for (int l = 0; l < p.n_layers; l++) {
        EXPECT_EQ(r.predictors[l].hidden, ember::PredictorHidden::PREDICTOR_HIDDEN_LINEAR);  // the default
        EXPECT_EQ(r.predictors[l].rank, (r.gate_rank + 1 + 31) / 32 * 32);
        EXPECT_GE(r.predictor_recall[l], 0.99f - 1e-5f) << "layer " << l;
        EXPECT_GT(r.predictor_sparsity[l], 0.6f) << "layer " << l;
    }
    // Each neuron's frequency is its target firing probability: the layer's mean is 1 - sparsity and the hottest
    // 20% take hot_share of the firings, and the file keeps them.
    const ember::ModelProfile prof = ember::synth_construction_profile(p, r);
    ember::profile_write(prof, prof_path);
    const ember::ModelProfile back = ember::profile_read(prof_path);
    for (int l = 0; l < p.n_layers; l++) {
        std::vector<float> f = back.layers[l].freq;
        ASSERT_EQ((int)f.size(), p.n_ff) << "layer " << l;
        EXPECT_EQ(f, prof.layers[l].freq) << "layer " << l;
        double sum = 0;
        for (float v : f) sum += v;
        EXPECT_NEAR(sum / p.n_ff, 1.0 - p.sparsity, 1e-3) << "layer " << l;
        std::sort(f.begin(), f.end(), std::greater<float>());
        double top = 0;
        for (int i = 0; i < ember::synth_hot_count(p.n_ff); i++) top += f[i];
        EXPECT_NEAR(top / sum, p.hot_share, 1e-2) << "layer " << l;
    }
    EXPECT_NE(back.layers[0].freq, back.layers[1].freq) << "hot neurons differ per layer";

    ember::ModelParams mp;
    mp.path = path;
    auto dense = ember::Model::load(mp);
    mp.profile_path = prof_path;
    auto sparse = ember::Model::load(mp);
    ASSERT_TRUE(sparse->sparse());
    // Fresh random tokens, decoded one at a time: firings the predictors miss are counted against the dense truth.
    ember::SessionParams sp;
    sp.n_ctx = 64;
    sp.n_threads = 2;
    ember::Session ds(*dense, sp), ss(*sparse, sp);
    std::vector<std::vector<float>> truth;  // (layer) dense h of the current token
    ds.set_ffn_observer([&](int layer, const float*, int, const float* h, int, int n_ff) {
        truth.resize(p.n_layers);
        truth[layer].assign(h, h + n_ff);
    });
    uint64_t fired = 0, missed = 0;
    ss.set_ffn_observer([&](int layer, const float*, int, const float* h, int, int n_ff) {
        for (int i = 0; i < n_ff; i++) {
            if (truth[layer][i] == 0.0f) continue;
            fired++;
            missed += h[i] == 0.0f;
        }
    });
    std::mt19937 rng(99);
    std::uniform_int_distribution<int32_t> any(3, dense->info().n_vocab - 1);
    // The two sessions see the same tokens, the sparse one its own (slightly different) residual stream; layer 0's
    // input is the embedding in both, so its comparison is exact and the rest are close.
    for (int t = 0; t < 48; t++) {
        const int32_t tok = any(rng);
        ds.eval({tok});
        ss.eval({tok});
    }
    const double recall = 1.0 - (double)missed / (double)fired;
    const ember::SparseFfnStats& st = ss.sparse_stats();
    std::printf("construction predictors on new tokens: recall %.4f, predicted active %.3f\n", recall,
                st.predicted_share());
    EXPECT_GT(recall, 0.97);
    EXPECT_LT(st.predicted_share(), 0.35);
    std::remove(path.c_str());
    std::remove(prof_path.c_str());
}

// The linear construction predictors score as the ReLU ones (the same rule at twice the rank, in +/- pairs) and
// get the same thresholds; the model's bytes do not depend on the choice.
TEST(Synth, LinearConstructionPredictorsScoreAsTheReluOnes) {
    SynthParams p = small_model(DType::DTYPE_F16, 0.9f, 0.8f);
    p.construction_predictors = true;
    const std::string path = temp_path("construction-linear"), relu_path = temp_path("construction-relu");
    const ember::SynthReport lin = ember::synth_write(p, path);
    p.predictor_hidden = ember::PredictorHidden::PREDICTOR_HIDDEN_RELU;
    const ember::SynthReport relu = ember::synth_write(p, relu_path);
    EXPECT_EQ(slurp(path), slurp(relu_path));
    ember::ThreadPool pool(2);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int l = 0; l < p.n_layers; l++) {
        const ember::Predictor &a = lin.predictors[l], &b = relu.predictors[l];
        EXPECT_EQ(a.hidden, ember::PredictorHidden::PREDICTOR_HIDDEN_LINEAR);
        EXPECT_EQ(b.hidden, ember::PredictorHidden::PREDICTOR_HIDDEN_RELU);
        EXPECT_EQ(a.rank, (lin.gate_rank + 1 + 31) / 32 * 32);
        EXPECT_EQ(b.rank, (2 * (lin.gate_rank + 1) + 31) / 32 * 32);
        EXPECT_EQ(a.threshold, b.threshold) << "layer " << l;
        EXPECT_EQ(lin.predictor_recall[l], relu.predictor_recall[l]) << "layer " << l;
        std::vector<float> x(p.dim), sa(p.n_ff), sb(p.n_ff), h(std::max(a.rank, b.rank));
        for (float& v : x) v = nd(rng);
        ember::predictor_run(a, x.data(), sa.data(), h.data(), pool);
        ember::predictor_run(b, x.data(), sb.data(), h.data(), pool);
        for (int i = 0; i < p.n_ff; i++)
            ASSERT_NEAR(sa[i], sb[i], 1e-4f * (1.0f + std::fabs(sb[i]))) << "layer " << l << " neuron " << i;
    }
    std::remove(path.c_str());
    std::remove(relu_path.c_str());
}

}  // namespace
