// The tools of models/tiny-relu, run as built: ember-tokenize-corpus (BOS per document, the token cap),
// ember-tiny-pack (train.py's manifest and shards to GGUF: every weight in place, every key set, bad input
// refused), ember-tiny-logits and ember-sparsity on the packed model.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/ember.h"
#include "tests/run-process.h"

namespace {

using nlohmann::json;

// stories260K's 512-token SentencePiece vocabulary stands in for the 32,000-token one.
const std::string kVocab = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";

using ember_test::RunResult;
using ember_test::slurp;

std::string temp_path(const std::string& name) { return ember_test::temp_path("tiny-relu", name); }

RunResult run(const std::string& binary, const std::vector<std::string>& args) {
    return ember_test::run_process(binary, args);
}

std::vector<uint16_t> read_u16(const std::string& path) {
    const std::string b = slurp(path);
    std::vector<uint16_t> v(b.size() / 2);
    std::memcpy(v.data(), b.data(), v.size() * 2);
    return v;
}

TEST(TokenizeCorpus, BosBeforeEveryDocument) {
    const std::vector<std::string> docs = {"Once upon a time.", "There was a cat.\n\nIt sat.", "The end"};
    const std::string text = temp_path("docs.txt"), bin = temp_path("docs.bin");
    std::ofstream(text, std::ios::binary) << docs[0] << "\n\n\n" << docs[1] << "\n\n\n" << docs[2] << "\n";
    RunResult r = run(EMBER_TOKENIZE_CORPUS_BIN, {"-m", kVocab, "-i", text, "-o", bin, "-t", "2"});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto file = ember::GGUFFile::open(kVocab);
    auto tok = ember::Tokenizer::from_gguf(*file);
    std::vector<uint16_t> want;
    for (const std::string& d : docs)
        for (int32_t id : tok->encode(d, true, false)) want.push_back((uint16_t)id);
    EXPECT_EQ(read_u16(bin), want);
    const json summary = json::parse(r.out);
    EXPECT_EQ(summary["documents"], 3);
    EXPECT_EQ(summary["tokens"], want.size());

    // The cap keeps whole documents only.
    const size_t first = tok->encode(docs[0], true, false).size();
    r = run(EMBER_TOKENIZE_CORPUS_BIN,
            {"-m", kVocab, "-i", text, "-o", bin, "--max-tokens", std::to_string(first + 1)});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(read_u16(bin).size(), first);
    EXPECT_EQ(json::parse(r.out)["documents_left_out"], 2);
    std::remove(text.c_str());
    std::remove(bin.c_str());
}

// What train.py writes, for dim 64, 2 layers, 4 heads, 2 KV heads, n_ff 128, tied, over the 512-token vocab:
// seeded random weights, split over shards of `shard_bytes`.
struct FakeTraining {
    std::string dir;
    json manifest;
    std::vector<std::pair<std::string, std::vector<float>>> tensors;  // GGUF name, values (rows * cols)

    explicit FakeTraining(size_t shard_bytes) : dir(temp_path("weights")) {
        ::mkdir(dir.c_str(), 0755);
        const int dim = 64, ff = 128, kv = 32, vocab = 512;
        std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {{"token_embd.weight", {vocab, dim}}};
        for (int l = 0; l < 2; l++) {
            const std::string p = "blk." + std::to_string(l) + ".";
            shapes.push_back({p + "attn_norm.weight", {dim}});
            shapes.push_back({p + "attn_q.weight", {dim, dim}});
            shapes.push_back({p + "attn_k.weight", {kv, dim}});
            shapes.push_back({p + "attn_v.weight", {kv, dim}});
            shapes.push_back({p + "attn_output.weight", {dim, dim}});
            shapes.push_back({p + "ffn_norm.weight", {dim}});
            shapes.push_back({p + "ffn_gate.weight", {ff, dim}});
            shapes.push_back({p + "ffn_up.weight", {ff, dim}});
            shapes.push_back({p + "ffn_down.weight", {dim, ff}});
        }
        shapes.push_back({"output_norm.weight", {dim}});
        std::mt19937 rng(7);
        std::normal_distribution<float> normal(0.0f, 0.1f);
        std::string blob;
        json jt = json::array();
        for (const auto& [name, shape] : shapes) {
            size_t n = 1;
            for (int64_t d : shape) n *= (size_t)d;
            std::vector<float> v(n);
            double sa = 0, sq = 0;
            for (float& x : v) {
                x = shape.size() == 1 ? 1.0f + normal(rng) : normal(rng);
                sa += std::fabs((double)x);
                sq += (double)x * x;
            }
            jt.push_back({{"name", name}, {"shape", shape}, {"offset", blob.size()}, {"bytes", n * 4},
                          {"sum_abs", sa}, {"sum_sq", sq}});
            blob.append((const char*)v.data(), n * 4);
            tensors.push_back({name, v});
        }
        json shards = json::array();
        for (size_t i = 0; i < blob.size(); i += shard_bytes) {
            char fname[32];
            std::snprintf(fname, sizeof fname, "weights.%03zu.bin", shards.size());
            const std::string part = blob.substr(i, shard_bytes);
            std::ofstream(dir + "/" + fname, std::ios::binary) << part;
            shards.push_back({{"file", fname}, {"bytes", part.size()}});
        }
        manifest = {{"format", "ember-tiny-relu-weights"}, {"version", 1}, {"dtype", "F32"},
                    {"name", "test tiny-relu"}, {"description", "made by tiny-relu-test"},
                    {"hparams", {{"n_vocab", vocab}, {"dim", dim}, {"n_layers", 2}, {"n_heads", 4},
                                 {"n_kv_heads", 2}, {"n_ff", ff}, {"n_ctx", 32}, {"rope_freq_base", 10000.0},
                                 {"norm_eps", 1e-5}, {"tied", true}, {"ffn_activation", "relu"},
                                 {"rope_pairs", "adjacent"}}},
                    {"shards", shards}, {"tensors", jt}};
        write_manifest();
    }
    void write_manifest() const { std::ofstream(dir + "/manifest.json") << manifest.dump(1); }
    ~FakeTraining() { std::system(("rm -rf '" + dir + "'").c_str()); }
};

TEST(TinyPack, EveryWeightAndKeyInPlace) {
    FakeTraining t(10000);  // several shards, tensors straddling them
    const std::string out = temp_path("packed.gguf");
    RunResult r = run(EMBER_TINY_PACK_BIN, {"-w", t.dir, "-v", kVocab, "-o", out});
    ASSERT_EQ(r.rc, 0) << r.err;
    ember::ModelParams mp;
    mp.path = out;
    auto model = ember::Model::load(mp);
    const ember::ModelInfo& info = model->info();
    EXPECT_EQ(info.arch, "llama");
    EXPECT_EQ(info.name, "test tiny-relu");
    EXPECT_EQ(info.ffn_act, "relu");
    EXPECT_EQ(info.dim, 64);
    EXPECT_EQ(info.n_layers, 2);
    EXPECT_EQ(info.n_heads, 4);
    EXPECT_EQ(info.n_kv_heads, 2);
    EXPECT_EQ(info.n_ff, 128);
    EXPECT_EQ(info.n_ctx_train, 32);
    EXPECT_EQ(info.n_rot, 16);
    EXPECT_FALSE(info.rope_neox);
    EXPECT_FLOAT_EQ(info.norm_eps, 1e-5f);
    EXPECT_EQ(model->file().find_tensor("output.weight"), nullptr);  // tied
    EXPECT_EQ(model->tokenizer().n_vocab(), 512);
    for (const auto& [name, values] : t.tensors) {
        const ember::GGUFTensorInfo* ti = model->file().find_tensor(name);
        ASSERT_NE(ti, nullptr) << name;
        EXPECT_EQ(ti->type, 0u) << name;
        ASSERT_EQ((size_t)ti->n_elements(), values.size()) << name;
        EXPECT_EQ(std::memcmp(ti->data, values.data(), values.size() * 4), 0) << name;
    }
    // PyTorch's (rows, cols) became GGUF's {cols, rows}.
    const ember::GGUFTensorInfo* down = model->file().find_tensor("blk.1.ffn_down.weight");
    EXPECT_EQ(down->ne[0], 128);
    EXPECT_EQ(down->ne[1], 64);

    // The packed model runs; ember-tiny-logits and ember-sparsity read it.
    const std::string logits = temp_path("logits.f32");
    r = run(EMBER_TINY_LOGITS_BIN, {"-m", out, "--tokens", "1,400,35", "-o", logits, "-t", "1"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(slurp(logits).size(), 3u * 512 * 4);
    const std::string text = temp_path("text.txt");
    std::ofstream(text) << "Once upon a time, there was a little girl named Lily. She loved to play outside.";
    r = run(EMBER_SPARSITY_BIN, {"-m", out, "-f", text, "-c", "8", "-t", "1", "--json"});
    ASSERT_EQ(r.rc, 0) << r.err;
    const json s = json::parse(r.out);
    EXPECT_EQ(s["sparsity"].size(), 2u);
    EXPECT_GT(s["tokens"].get<int>(), 10);
    EXPECT_GT(s["sparsity_all"].get<double>(), 0.1);  // random gates: about half the neurons are silent
    EXPECT_LT(s["sparsity_all"].get<double>(), 0.9);
    r = run(EMBER_SPARSITY_BIN, {"-m", out, "-f", text, "-c", "8", "-t", "1"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.out.find("hot20%-share"), std::string::npos) << r.out;
    for (const std::string& p : {out, logits, text}) std::remove(p.c_str());
}

TEST(TinyPack, RefusesBadInput) {
    const std::string out = temp_path("bad.gguf");
    {
        FakeTraining t(1 << 20);
        t.manifest["tensors"][3]["sum_sq"] = t.manifest["tensors"][3]["sum_sq"].get<double>() * 1.001;
        t.write_manifest();
        const RunResult r = run(EMBER_TINY_PACK_BIN, {"-w", t.dir, "-v", kVocab, "-o", out});
        EXPECT_EQ(r.rc, 1);
        EXPECT_NE(r.err.find("checksums differ"), std::string::npos) << r.err;
    }
    {
        FakeTraining t(1 << 20);
        t.manifest["tensors"].erase(t.manifest["tensors"].begin() + 5);
        t.write_manifest();
        const RunResult r = run(EMBER_TINY_PACK_BIN, {"-w", t.dir, "-v", kVocab, "-o", out});
        EXPECT_EQ(r.rc, 1);
        EXPECT_NE(r.err.find("is missing"), std::string::npos) << r.err;
    }
    {
        FakeTraining t(4096);
        std::ofstream(t.dir + "/weights.001.bin", std::ios::binary) << "short";  // a truncated transfer
        const RunResult r = run(EMBER_TINY_PACK_BIN, {"-w", t.dir, "-v", kVocab, "-o", out});
        EXPECT_EQ(r.rc, 1);
        EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
    }
    {
        FakeTraining t(1 << 20);
        t.manifest["hparams"]["rope_pairs"] = "neox";
        t.write_manifest();
        const RunResult r = run(EMBER_TINY_PACK_BIN, {"-w", t.dir, "-v", kVocab, "-o", out});
        EXPECT_EQ(r.rc, 1);
        EXPECT_NE(r.err.find("rope_pairs"), std::string::npos) << r.err;
    }
    {
        FakeTraining t(1 << 20);
        t.manifest["tensors"][1]["shape"] = {32};
        t.write_manifest();
        const RunResult r = run(EMBER_TINY_PACK_BIN, {"-w", t.dir, "-v", kVocab, "-o", out});
        EXPECT_EQ(r.rc, 1);
        EXPECT_NE(r.err.find("expected shape"), std::string::npos) << r.err;
    }
    EXPECT_NE(::access(out.c_str(), F_OK), 0) << "nothing may be written on failure";
}

}  // namespace
