// Profile file round trips, PowerInfer predictor files, and one error per kind of corruption, each checked to name
// the tensor or key at fault.
#include "predictor/profile.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <tuple>

#include "engine/ember.h"
#include "engine/error.h"
#include "kernels-cpu/quant.h"
#include "predictor/predictor.h"

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";

std::string tmp_path(const std::string& name) {
    return ::testing::TempDir() + "ember-profile-" + std::to_string(getpid()) + "-" + name + ".gguf";
}

// A profile shaped like stories260K (5 layers, dim 64, n_ff 172), seeded random contents.
ember::ModelProfile make_profile(int n_layers = 5, int dim = 64, int n_ff = 172, int rank = 16) {
    std::mt19937 rng(42);
    std::normal_distribution<float> w(0.0f, 0.5f);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    ember::ModelProfile p;
    p.model_name = "stories260K";
    p.n_layers = n_layers;
    p.dim = dim;
    p.n_ff = n_ff;
    p.n_tokens = 12345;
    for (int l = 0; l < n_layers; l++) {
        ember::LayerProfile lp;
        lp.freq.resize(n_ff);
        for (float& f : lp.freq) f = u(rng);
        ember::Predictor& pr = lp.predictor;
        pr.dim = dim;
        pr.rank = rank;
        pr.n_ff = n_ff;
        pr.threshold = 0.1f * l;
        pr.fc1.resize((size_t)rank * dim);
        pr.fc2.resize((size_t)n_ff * rank);
        for (float& x : pr.fc1) x = w(rng);
        for (float& x : pr.fc2) x = w(rng);
        lp.sparsity = 0.8f;
        lp.recall = 0.99f - 0.01f * l;
        lp.precision = 0.5f + 0.05f * l;
        p.layers.push_back(std::move(lp));
    }
    return p;
}

void expect_near(const std::vector<float>& a, const std::vector<float>& b, float rel) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); i++) ASSERT_NEAR(a[i], b[i], rel * std::fabs(a[i]) + 1e-7f) << "element " << i;
}

void expect_same(const ember::ModelProfile& a, const ember::ModelProfile& b, float rel) {
    EXPECT_EQ(a.model_name, b.model_name);
    EXPECT_EQ(a.n_layers, b.n_layers);
    EXPECT_EQ(a.dim, b.dim);
    EXPECT_EQ(a.n_ff, b.n_ff);
    EXPECT_EQ(a.n_tokens, b.n_tokens);
    ASSERT_EQ(a.layers.size(), b.layers.size());
    for (size_t l = 0; l < a.layers.size(); l++) {
        const ember::LayerProfile &x = a.layers[l], &y = b.layers[l];
        EXPECT_EQ(x.freq, y.freq);
        EXPECT_EQ(x.predictor.dim, y.predictor.dim);
        EXPECT_EQ(x.predictor.rank, y.predictor.rank);
        EXPECT_EQ(x.predictor.n_ff, y.predictor.n_ff);
        EXPECT_EQ(x.predictor.hidden, y.predictor.hidden);
        EXPECT_EQ(x.predictor.threshold, y.predictor.threshold);
        expect_near(x.predictor.fc1, y.predictor.fc1, rel);
        expect_near(x.predictor.fc2, y.predictor.fc2, rel);
        EXPECT_EQ(x.sparsity, y.sparsity);
        EXPECT_EQ(x.recall, y.recall);
        EXPECT_EQ(x.precision, y.precision);
    }
}

// Expects f() to throw ember::Error whose message contains every string in `names`.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& names) {
    try {
        f();
        FAIL() << "no error; expected one naming " << names[0];
    } catch (const ember::Error& e) {
        for (const std::string& n : names) EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
            << "message \"" << e.what() << "\" does not name " << n;
    }
}

// Writes a profile by hand (keys and tensors as profile_write does), letting a test corrupt one piece.
struct RawProfile {
    ember::ModelProfile p = make_profile(2, 8, 12, 4);
    std::string skip_tensor;                 // tensor left out
    int fc2_rank = 0;                        // fc2 ne[0] when nonzero
    int fc1_dim = 0;                         // fc1 ne[0] when nonzero
    int threshold_count = 0;                 // threshold array length when nonzero
    uint32_t freq_type = 0;                  // ggml type of ffn_freq (F32 = 0)
    std::string f16_tensor;                  // predictor tensor stored as F16 (the others are F32)
    uint32_t version = 1;                    // ember.profile.version
    std::string hidden;                      // ember.profile.predictor_hidden when not empty

    std::string write(const std::string& name) const {
        ember::GGUFWriter w;
        w.set_string("general.architecture", "ember-profile");
        w.set_u32("ember.profile.version", version);
        if (!hidden.empty()) w.set_string("ember.profile.predictor_hidden", hidden);
        w.set_string("ember.profile.model_name", p.model_name);
        w.set_u32("ember.profile.n_layers", p.n_layers);
        w.set_u32("ember.profile.dim", p.dim);
        w.set_u32("ember.profile.n_ff", p.n_ff);
        w.set_u64("ember.profile.n_tokens", p.n_tokens);
        const int nt = threshold_count ? threshold_count : p.n_layers;
        w.set_f32_array("ember.profile.threshold", std::vector<float>(nt, 0.0f));
        for (const char* k : {"sparsity", "recall", "precision"})
            w.set_f32_array(std::string("ember.profile.") + k, std::vector<float>(p.n_layers, 0.5f));
        for (int l = 0; l < p.n_layers; l++) {
            const ember::Predictor& pr = p.layers[l].predictor;
            const std::string b = "blk." + std::to_string(l) + ".";
            const int d = fc1_dim ? fc1_dim : pr.dim, r2 = fc2_rank ? fc2_rank : pr.rank;
            std::vector<float> fc1((size_t)d * pr.rank, 0.25f), fc2((size_t)r2 * pr.n_ff, 0.5f);
            fc1 = d == pr.dim ? pr.fc1 : fc1;
            fc2 = r2 == pr.rank ? pr.fc2 : fc2;
            if (b + "ffn_freq" != skip_tensor) {
                if (freq_type == 0)
                    w.add_tensor(b + "ffn_freq", 0, {p.n_ff}, p.layers[l].freq.data(), p.n_ff * sizeof(float));
                else
                    w.add_tensor(b + "ffn_freq", freq_type, {p.n_ff}, std::vector<uint16_t>(p.n_ff).data(),
                                 p.n_ff * sizeof(uint16_t));
            }
            auto add = [&](const std::string& name, const std::vector<float>& v, int64_t cols, int64_t rows) {
                if (name == skip_tensor) return;
                if (name != f16_tensor) {
                    w.add_tensor(name, 0, {cols, rows}, v.data(), v.size() * sizeof(float));
                    return;
                }
                std::vector<uint16_t> h(v.size());
                ember::quantize_row(ember::DType::DTYPE_F16, v.data(), h.data(), (int64_t)v.size());
                w.add_tensor(name, 1, {cols, rows}, h.data(), h.size() * sizeof(uint16_t));
            };
            add(b + "fc1.weight", fc1, d, pr.rank);
            add(b + "fc2.weight", fc2, r2, pr.n_ff);
        }
        const std::string path = tmp_path(name);
        w.write(path);
        return path;
    }
};

TEST(Profile, RoundTripF32) {
    const ember::ModelProfile p = make_profile();
    const std::string path = tmp_path("f32");
    ember::profile_write(p, path);
    auto f = ember::GGUFFile::open(path);
    EXPECT_EQ(f->get_string("general.architecture"), "ember-profile");
    EXPECT_EQ(f->get_f32("powerinfer.sparse_threshold"), p.layers[0].predictor.threshold);
    EXPECT_EQ(f->find_tensor("blk.4.fc1.weight")->ne[0], 64);
    EXPECT_EQ(f->find_tensor("blk.4.fc1.weight")->ne[1], 16);
    EXPECT_EQ(f->find_tensor("blk.4.fc2.weight")->ne[0], 16);
    EXPECT_EQ(f->find_tensor("blk.4.fc2.weight")->ne[1], 172);
    const ember::ModelProfile back = ember::profile_read(*f);
    expect_same(p, back, 0.0f);
    EXPECT_EQ(back.weight_type, ember::DType::DTYPE_F32);
    std::remove(path.c_str());
}

TEST(Profile, RoundTripF16) {
    ember::ModelProfile p = make_profile();
    for (bool by_field : {false, true}) {  // the type given to profile_write, or the profile's own weight_type
        const std::string path = tmp_path(by_field ? "f16-field" : "f16");
        if (by_field) {
            p.weight_type = ember::DType::DTYPE_F16;
            ember::profile_write(p, path);
        } else {
            ember::profile_write(p, path, ember::DType::DTYPE_F16);
        }
        auto f = ember::GGUFFile::open(path);
        EXPECT_EQ(f->find_tensor("blk.0.fc1.weight")->type, (uint32_t)ember::DType::DTYPE_F16);
        EXPECT_EQ(f->find_tensor("blk.4.fc2.weight")->type, (uint32_t)ember::DType::DTYPE_F16);
        EXPECT_EQ(f->find_tensor("blk.0.ffn_freq")->type, (uint32_t)ember::DType::DTYPE_F32);
        const ember::ModelProfile back = ember::profile_read(*f);
        expect_same(p, back, 1.0f / 1024);  // F16: 10-bit mantissa, round to nearest
        EXPECT_EQ(back.weight_type, ember::DType::DTYPE_F16);
        std::remove(path.c_str());
    }
}

// Q8_0 predictors (GGUF type 8): the file holds the Q8_0 blocks, reading gives their values, and packing what was
// read in Q8_0 again (as the engine does at load) reproduces the original blocks bit for bit.
TEST(Profile, RoundTripQ8_0) {
    ember::ModelProfile p = make_profile(5, 64, 172, 32);
    p.weight_type = ember::DType::DTYPE_Q8_0;
    const std::string path = tmp_path("q8_0");
    ember::profile_write(p, path);
    auto f = ember::GGUFFile::open(path);
    for (const char* name : {"blk.0.fc1.weight", "blk.4.fc2.weight"}) {
        EXPECT_EQ(f->find_tensor(name)->type, 8u) << name;
        EXPECT_EQ(f->find_tensor(name)->n_bytes, f->find_tensor(name)->n_elements() / 32 * 34) << name;
    }
    EXPECT_EQ(f->find_tensor("blk.0.ffn_freq")->type, (uint32_t)ember::DType::DTYPE_F32);
    const ember::ModelProfile back = ember::profile_read(*f);
    EXPECT_EQ(back.weight_type, ember::DType::DTYPE_Q8_0);
    // Reference: each weight through Q8_0 and back.
    auto q8 = [](const std::vector<float>& v) {
        std::vector<uint8_t> q(v.size() / 32 * 34);
        std::vector<float> out(v.size());
        ember::quantize_row(ember::DType::DTYPE_Q8_0, v.data(), q.data(), (int64_t)v.size());
        ember::dequantize_row(ember::DType::DTYPE_Q8_0, q.data(), out.data(), (int64_t)v.size());
        return out;
    };
    ember::ModelProfile want = p;
    for (ember::LayerProfile& lp : want.layers) {
        lp.predictor.fc1 = q8(lp.predictor.fc1);
        lp.predictor.fc2 = q8(lp.predictor.fc2);
    }
    expect_same(want, back, 0.0f);
    for (int l = 0; l < p.n_layers; l++) {
        const ember::PredictorWeights a = ember::predictor_pack(p.layers[l].predictor, ember::DType::DTYPE_Q8_0);
        const ember::PredictorWeights b = ember::predictor_pack(back.layers[l].predictor, ember::DType::DTYPE_Q8_0);
        EXPECT_EQ(a.fc1, b.fc1) << "layer " << l;
        EXPECT_EQ(a.fc2, b.fc2) << "layer " << l;
        EXPECT_EQ(a.threshold, b.threshold) << "layer " << l;
    }
    std::remove(path.c_str());
}

TEST(Profile, WriteQ8_0NeedsWholeBlocks) {
    ember::ModelProfile p = make_profile(2, 64, 172, 16);  // rank 16: fc2 rows of 16, half a block
    p.weight_type = ember::DType::DTYPE_Q8_0;
    const std::string path = tmp_path("q8_0-rank16");
    expect_error([&] { ember::profile_write(p, path); }, {path, "layer 0", "multiples of 32", "rank=16"});
    p.weight_type = ember::DType::DTYPE_Q4_0;
    expect_error([&] { ember::profile_write(p, path); }, {path, "F32, F16 or Q8_0"});
}

// Every fc1 and fc2 must have the type of blk.0.fc1.weight (the one type the engine runs them in).
TEST(Profile, WeightTypeMismatchNamesTheLayer) {
    struct Case {
        const char* f16_tensor;
        std::vector<std::string> named;
    };
    const std::vector<Case> cases = {
        {"blk.1.fc2.weight", {"layer 1", "blk.1.fc2.weight", "expected type F32", "found F16"}},
        {"blk.1.fc1.weight", {"layer 1", "blk.1.fc1.weight", "expected type F32", "found F16"}},
        {"blk.0.fc2.weight", {"layer 0", "blk.0.fc2.weight", "expected type F32", "found F16"}},
        {"blk.0.fc1.weight", {"layer 0", "blk.0.fc2.weight", "expected type F16", "found F32"}},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.f16_tensor);
        RawProfile r;
        r.f16_tensor = c.f16_tensor;
        const std::string path = r.write("mixed");
        std::vector<std::string> named = c.named;
        named.push_back(path);
        expect_error([&] { ember::profile_read(path); }, named);
        std::remove(path.c_str());
    }
}

TEST(Profile, NoFrequenciesRoundTrip) {
    ember::ModelProfile p = make_profile(2, 8, 12, 4);
    for (auto& lp : p.layers) lp.freq.clear();
    const std::string path = tmp_path("nofreq");
    ember::profile_write(p, path);
    expect_same(p, ember::profile_read(path), 0.0f);
    std::remove(path.c_str());
}

// A PowerInfer-style model file: llama keys, predictor tensors and one global threshold, magic "PWRI". Its
// predictors are F16 (as PowerInfer ships them) or F32; the profile's weight_type follows.
TEST(Profile, PowerInferFile) {
    const ember::ModelProfile ref = make_profile(3, 16, 40, 8);
    for (ember::DType type : {ember::DType::DTYPE_F16, ember::DType::DTYPE_F32}) {
        SCOPED_TRACE(ember::dtype_name(type));
        ember::GGUFWriter w;
        w.set_string("general.architecture", "llama");
        w.set_string("general.name", "relu-llama");
        w.set_u32("llama.block_count", 3);
        w.set_u32("llama.embedding_length", 16);
        w.set_u32("llama.feed_forward_length", 40);
        w.set_f32("powerinfer.sparse_threshold", 0.25f);
        const size_t elem = type == ember::DType::DTYPE_F16 ? 2 : 4;
        for (int l = 0; l < 3; l++) {
            const ember::Predictor& pr = ref.layers[l].predictor;
            const std::string b = "blk." + std::to_string(l) + ".";
            for (const auto& [name, v, cols, rows] :
                 {std::tuple{"fc1.weight", &pr.fc1, 16, 8}, std::tuple{"fc2.weight", &pr.fc2, 8, 40}}) {
                std::vector<uint8_t> bytes(v->size() * elem);
                ember::quantize_row(type, v->data(), bytes.data(), (int64_t)v->size());
                w.add_tensor(b + name, (uint32_t)type, {cols, rows}, bytes.data(), bytes.size());
            }
        }
        const std::string path = tmp_path("pwri");
        w.write(path);
        {
            std::fstream fs(path, std::ios::in | std::ios::out | std::ios::binary);
            fs.write("PWRI", 4);
        }
        auto f = ember::GGUFFile::open(path);
        ASSERT_TRUE(f->is_powerinfer());
        const ember::ModelProfile p = ember::profile_read(*f);
        EXPECT_EQ(p.model_name, "relu-llama");
        EXPECT_EQ(p.n_layers, 3);
        EXPECT_EQ(p.dim, 16);
        EXPECT_EQ(p.n_ff, 40);
        EXPECT_EQ(p.n_tokens, 0u);
        EXPECT_EQ(p.weight_type, type);
        const float tol = type == ember::DType::DTYPE_F16 ? 1.0f / 1024 : 0.0f;
        for (int l = 0; l < 3; l++) {
            const ember::LayerProfile& lp = p.layers[l];
            EXPECT_TRUE(lp.freq.empty());
            EXPECT_EQ(lp.predictor.rank, 8);
            EXPECT_EQ(lp.predictor.threshold, 0.25f);
            expect_near(lp.predictor.fc1, ref.layers[l].predictor.fc1, tol);
            expect_near(lp.predictor.fc2, ref.layers[l].predictor.fc2, tol);
            EXPECT_TRUE(std::isnan(lp.sparsity) && std::isnan(lp.recall) && std::isnan(lp.precision));
        }
        std::remove(path.c_str());
    }
}

TEST(Profile, PowerInferWithoutThresholdNamesKey) {
    ember::GGUFWriter w;
    w.set_string("general.architecture", "llama");
    const std::vector<float> fc1(4 * 2, 1.0f), fc2(2 * 3, 1.0f);
    w.add_tensor("blk.0.fc1.weight", 0, {4, 2}, fc1.data(), fc1.size() * 4);
    w.add_tensor("blk.0.fc2.weight", 0, {2, 3}, fc2.data(), fc2.size() * 4);
    const std::string path = tmp_path("pwri-nothr");
    w.write(path);
    expect_error([&] { ember::profile_read(path); }, {path, "powerinfer.sparse_threshold"});
    std::remove(path.c_str());
}

TEST(Profile, NotAProfile) {
    expect_error([&] { ember::profile_read(kModel); }, {kModel, "ember-profile", "blk.0.fc1.weight"});
}

TEST(Profile, HandWrittenReferenceReads) {
    const RawProfile raw;
    const std::string path = raw.write("raw-ok");
    EXPECT_EQ(ember::profile_read(path).layers[1].predictor.fc2, raw.p.layers[1].predictor.fc2);
    std::remove(path.c_str());
}

struct Corruption {
    const char* name;
    std::function<void(RawProfile&)> edit;
    std::vector<std::string> named;  // strings the error must contain
};

TEST(Profile, CorruptionsNameTheCulprit) {
    const std::vector<Corruption> cases = {
        {"missing-fc2", [](RawProfile& r) { r.skip_tensor = "blk.1.fc2.weight"; }, {"layer 1", "blk.1.fc2.weight"}},
        {"missing-fc1", [](RawProfile& r) { r.skip_tensor = "blk.0.fc1.weight"; }, {"blk.0.fc1.weight"}},
        {"rank-mismatch", [](RawProfile& r) { r.fc2_rank = 5; }, {"blk.0.fc2.weight", "rank", "= 4", "found 5"}},
        {"wrong-dim", [](RawProfile& r) { r.fc1_dim = 9; }, {"blk.0.fc1.weight", "dim = 8", "found 9"}},
        {"non-finite", [](RawProfile& r) { r.p.layers[1].predictor.fc1[3] = std::nanf(""); },
         {"blk.1.fc1.weight", "finite", "element 3"}},
        {"inf-fc2", [](RawProfile& r) { r.p.layers[0].predictor.fc2[0] = INFINITY; }, {"blk.0.fc2.weight", "inf"}},
        {"freq-range", [](RawProfile& r) { r.p.layers[1].freq[2] = 1.5f; }, {"blk.1.ffn_freq", "[0, 1]", "1.5"}},
        {"freq-dtype", [](RawProfile& r) { r.freq_type = 1; }, {"blk.0.ffn_freq", "F32", "F16"}},
        {"threshold-count", [](RawProfile& r) { r.threshold_count = 3; },
         {"ember.profile.threshold", "expected 2", "found 3"}},
        {"version-3", [](RawProfile& r) { r.version = 3; }, {"ember.profile.version", "1 or 2", "found 3"}},
        {"linear-in-version-1", [](RawProfile& r) { r.hidden = "linear"; },
         {"ember.profile.predictor_hidden", "version 1", "\"linear\""}},
        {"version-2-without-hidden", [](RawProfile& r) { r.version = 2; },
         {"missing key ember.profile.predictor_hidden", "version 2"}},
        {"unknown-hidden", [](RawProfile& r) { r.version = 2, r.hidden = "tanh"; },
         {"ember.profile.predictor_hidden", "\"relu\" or \"linear\"", "\"tanh\""}},
    };
    for (const Corruption& c : cases) {
        SCOPED_TRACE(c.name);
        RawProfile r;
        c.edit(r);
        const std::string path = r.write(c.name);
        std::vector<std::string> named = c.named;
        named.push_back(path);
        expect_error([&] { ember::profile_read(path); }, named);
        std::remove(path.c_str());
    }
}

// A version 1 file with the key saying "relu", and a version 2 file saying either, read as such.
TEST(Profile, HandWrittenHiddenKeysRead) {
    for (auto [version, hidden] : {std::pair{1u, "relu"}, std::pair{2u, "relu"}, std::pair{2u, "linear"}}) {
        RawProfile r;
        r.version = version, r.hidden = hidden;
        const std::string path = r.write("raw-hidden");
        const ember::ModelProfile p = ember::profile_read(path);
        for (const ember::LayerProfile& lp : p.layers)
            EXPECT_STREQ(ember::predictor_hidden_name(lp.predictor.hidden), hidden) << "version " << version;
        std::remove(path.c_str());
    }
}

// Linear predictors are written as version 2 with the key, and read back as linear; ReLU ones stay version 1 (the
// key says "relu"), readable by a reader that knows only version 1.
TEST(Profile, RoundTripHiddenActivation) {
    using ember::PredictorHidden;
    for (auto hidden : {PredictorHidden::PREDICTOR_HIDDEN_RELU, PredictorHidden::PREDICTOR_HIDDEN_LINEAR}) {
        ember::ModelProfile p = make_profile();
        for (ember::LayerProfile& lp : p.layers) lp.predictor.hidden = hidden;
        const std::string path = tmp_path(ember::predictor_hidden_name(hidden));
        ember::profile_write(p, path);
        auto f = ember::GGUFFile::open(path);
        const bool linear = hidden == ember::PredictorHidden::PREDICTOR_HIDDEN_LINEAR;
        EXPECT_EQ(f->get_u32("ember.profile.version"), linear ? 2u : 1u);
        EXPECT_EQ(f->get_string("ember.profile.predictor_hidden"), ember::predictor_hidden_name(hidden));
        expect_same(p, ember::profile_read(*f), 0.0f);
        std::remove(path.c_str());
    }
}

TEST(Profile, WriteRejectsBadProfiles) {
    ember::ModelProfile p = make_profile(2, 8, 12, 4);
    p.layers[0].predictor.fc2.pop_back();
    expect_error([&] { ember::profile_write(p, tmp_path("bad")); }, {"layer 0", "fc2"});
    p = make_profile(2, 8, 12, 4);
    p.layers[1].predictor.fc1[0] = std::numeric_limits<float>::quiet_NaN();
    expect_error([&] { ember::profile_write(p, tmp_path("bad")); }, {"blk.1.fc1.weight", "finite"});
    p = make_profile(2, 8, 12, 4);
    p.layers.pop_back();
    expect_error([&] { ember::profile_write(p, tmp_path("bad")); }, {"expected 2 layers, found 1"});
    p = make_profile(2, 8, 12, 4);
    p.layers[0].recall = 2.0f;
    expect_error([&] { ember::profile_write(p, tmp_path("bad")); }, {"ember.profile.recall"});
    p = make_profile(3, 8, 12, 4);
    p.layers[2].predictor.hidden = ember::PredictorHidden::PREDICTOR_HIDDEN_LINEAR;
    expect_error([&] { ember::profile_write(p, tmp_path("bad")); }, {"layer 2", "linear", "expected relu"});
}

TEST(Profile, CheckModelStories260K) {
    ember::ModelParams mp;
    mp.path = kModel;
    auto model = ember::Model::load(mp);
    const ember::ModelInfo& info = model->info();
    ASSERT_EQ(info.n_layers, 5);
    ASSERT_EQ(info.dim, 64);
    ASSERT_EQ(info.n_ff, 172);
    EXPECT_NO_THROW(ember::profile_check_model(make_profile(), info));
    expect_error([&] { ember::profile_check_model(make_profile(4), info); }, {"n_layers", "expected 5", "found 4"});
    expect_error([&] { ember::profile_check_model(make_profile(5, 32), info); }, {"dim", "expected 64", "found 32"});
    expect_error([&] { ember::profile_check_model(make_profile(5, 64, 100), info); },
                 {"n_ff", "expected 172", "found 100"});
}

}  // namespace
