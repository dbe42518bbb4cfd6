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

#include "engine/ember.h"
#include "engine/error.h"

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

    std::string write(const std::string& name) const {
        ember::GGUFWriter w;
        w.set_string("general.architecture", "ember-profile");
        w.set_u32("ember.profile.version", 1);
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
            if (b + "fc1.weight" != skip_tensor)
                w.add_tensor(b + "fc1.weight", 0, {d, pr.rank}, fc1.data(), fc1.size() * sizeof(float));
            if (b + "fc2.weight" != skip_tensor)
                w.add_tensor(b + "fc2.weight", 0, {r2, pr.n_ff}, fc2.data(), fc2.size() * sizeof(float));
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
    expect_same(p, ember::profile_read(*f), 0.0f);
    std::remove(path.c_str());
}

TEST(Profile, RoundTripF16) {
    const ember::ModelProfile p = make_profile();
    const std::string path = tmp_path("f16");
    ember::profile_write(p, path, ember::DType::DTYPE_F16);
    auto f = ember::GGUFFile::open(path);
    EXPECT_EQ(f->find_tensor("blk.0.fc1.weight")->type, (uint32_t)ember::DType::DTYPE_F16);
    EXPECT_EQ(f->find_tensor("blk.0.ffn_freq")->type, (uint32_t)ember::DType::DTYPE_F32);
    expect_same(p, ember::profile_read(*f), 1.0f / 1024);  // F16: 10-bit mantissa, round to nearest
    std::remove(path.c_str());
}

TEST(Profile, NoFrequenciesRoundTrip) {
    ember::ModelProfile p = make_profile(2, 8, 12, 4);
    for (auto& lp : p.layers) lp.freq.clear();
    const std::string path = tmp_path("nofreq");
    ember::profile_write(p, path);
    expect_same(p, ember::profile_read(path), 0.0f);
    std::remove(path.c_str());
}

// A PowerInfer-style model file: llama keys, predictor tensors and one global threshold, magic "PWRI".
TEST(Profile, PowerInferFile) {
    const ember::ModelProfile ref = make_profile(3, 16, 40, 8);
    ember::GGUFWriter w;
    w.set_string("general.architecture", "llama");
    w.set_string("general.name", "relu-llama");
    w.set_u32("llama.block_count", 3);
    w.set_u32("llama.embedding_length", 16);
    w.set_u32("llama.feed_forward_length", 40);
    w.set_f32("powerinfer.sparse_threshold", 0.25f);
    for (int l = 0; l < 3; l++) {
        const ember::Predictor& pr = ref.layers[l].predictor;
        const std::string b = "blk." + std::to_string(l) + ".";
        w.add_tensor(b + "fc1.weight", 0, {16, 8}, pr.fc1.data(), pr.fc1.size() * sizeof(float));
        w.add_tensor(b + "fc2.weight", 0, {8, 40}, pr.fc2.data(), pr.fc2.size() * sizeof(float));
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
    for (int l = 0; l < 3; l++) {
        const ember::LayerProfile& lp = p.layers[l];
        EXPECT_TRUE(lp.freq.empty());
        EXPECT_EQ(lp.predictor.rank, 8);
        EXPECT_EQ(lp.predictor.threshold, 0.25f);
        EXPECT_EQ(lp.predictor.fc1, ref.layers[l].predictor.fc1);
        EXPECT_EQ(lp.predictor.fc2, ref.layers[l].predictor.fc2);
        EXPECT_TRUE(std::isnan(lp.sparsity) && std::isnan(lp.recall) && std::isnan(lp.precision));
    }
    std::remove(path.c_str());
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
