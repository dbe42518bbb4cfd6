// ember-tiny-pack: turns the raw weights that models/tiny-relu/train.py writes (manifest.json + weights.NNN.bin
// shards of float32) into an F32 GGUF model through ember's GGUFWriter, with the tokenizer copied from a vocab
// GGUF. Quantize the result with ember-quantize.
// Usage: ember-tiny-pack -w WEIGHTS_DIR -v VOCAB.gguf -o OUT.gguf
//
// The manifest names each tensor by its GGUF name with its PyTorch shape (rows, cols) and byte offset into the
// concatenated shards, plus sum|x| and sum x^2 so a truncated or corrupted transfer is caught here.
// No tensor is permuted: train.py rotates adjacent pairs (2i, 2i+1) as llama.cpp's "normal" RoPE does.
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "apps/app-args.h"
#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "models/llama.h"

using nlohmann::json;

namespace {

struct Args {
    std::string dir, vocab, out, name;
};

// Returns false when the tool should exit 0 (--help, --version).
bool parse_args(int argc, char** argv, Args& a) {
    ember::ArgParser args("ember-tiny-pack",
                          "Packs the raw weights train.py writes into an F32 GGUF model (ember-quantize makes the Q8_0\n"
                          "file), with the tokenizer copied from a vocab GGUF. -w, -v and -o are required.");
    args.add_string({"-w"}, &a.dir, "DIR",
                    "folder with manifest.json and the weights.NNN.bin shards written by train.py");
    args.add_string({"-v"}, &a.vocab, "FILE",
                    "GGUF file whose tokenizer.* keys are copied (a vocab-only file will do)");
    args.add_string({"-o"}, &a.out, "FILE",
                    "output model, all F32 (ember-quantize makes the Q8_0 file)");
    args.add_string({"--name"}, &a.name, "S", "general.name (default: the manifest's name)");
    if (!ember::app_parse_args(args, argc, argv)) return false;
    if (a.dir.empty() || a.vocab.empty() || a.out.empty())
        throw ember::Error("-w, -v and -o are required (see --help)");
    return true;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw ember::Error(path + ": cannot open: " + std::strerror(errno));
    std::vector<uint8_t> b((size_t)in.tellg());
    in.seekg(0);
    in.read((char*)b.data(), (std::streamsize)b.size());
    if (!in) throw ember::Error(path + ": read failed");
    return b;
}

// A manifest value that must be present, with a message naming the manifest and the key.
const json& need(const json& j, const std::string& key, const std::string& where) {
    if (!j.is_object() || !j.contains(key)) throw ember::Error(where + ": missing key '" + key + "'");
    return j.at(key);
}

int need_int(const json& j, const std::string& key, const std::string& where, int lo, int hi) {
    const json& v = need(j, key, where);
    if (!v.is_number_integer() || v.get<long long>() < lo || v.get<long long>() > hi)
        throw ember::Error(where + ": key '" + key + "': expected an integer in [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "], found " + v.dump());
    return v.get<int>();
}

struct Hparams {
    int n_vocab, dim, n_layers, n_heads, n_kv_heads, n_ff, n_ctx;
    float rope_freq_base, norm_eps;
    bool tied;
};

// Every tensor the llama loader binds, with its (rows, cols); 1-D tensors have cols == 0.
std::map<std::string, std::pair<int64_t, int64_t>> expected_tensors(const Hparams& h) {
    const int64_t head_dim = h.dim / h.n_heads, kv_dim = (int64_t)h.n_kv_heads * head_dim;
    std::map<std::string, std::pair<int64_t, int64_t>> t;
    t["token_embd.weight"] = {h.n_vocab, h.dim};
    t["output_norm.weight"] = {h.dim, 0};
    if (!h.tied) t["output.weight"] = {h.n_vocab, h.dim};
    for (int l = 0; l < h.n_layers; l++) {
        const std::string p = "blk." + std::to_string(l) + ".";
        t[p + "attn_norm.weight"] = {h.dim, 0};
        t[p + "attn_q.weight"] = {h.dim, h.dim};
        t[p + "attn_k.weight"] = {kv_dim, h.dim};
        t[p + "attn_v.weight"] = {kv_dim, h.dim};
        t[p + "attn_output.weight"] = {h.dim, h.dim};
        t[p + "ffn_norm.weight"] = {h.dim, 0};
        t[p + "ffn_gate.weight"] = {h.n_ff, h.dim};
        t[p + "ffn_up.weight"] = {h.n_ff, h.dim};
        t[p + "ffn_down.weight"] = {h.dim, h.n_ff};
    }
    return t;
}

// Packs one training output; see the file comment.
void pack(const Args& args) {
    const std::string mpath = args.dir + "/manifest.json";
    json m;
    {
        std::ifstream in(mpath);
        if (!in) throw ember::Error(mpath + ": cannot open: " + std::strerror(errno));
        try {
            m = json::parse(in);
        } catch (const json::exception& e) {
            throw ember::Error(mpath + ": not valid JSON: " + e.what());
        }
    }
    if (need(m, "format", mpath) != "ember-tiny-relu-weights" || need(m, "version", mpath) != 1)
        throw ember::Error(mpath + ": expected format 'ember-tiny-relu-weights' version 1, found " +
                           m["format"].dump() + " version " + m["version"].dump());
    if (need(m, "dtype", mpath) != "F32")
        throw ember::Error(mpath + ": key 'dtype': expected \"F32\", found " + m["dtype"].dump());
    const json& hp = need(m, "hparams", mpath);
    const std::string hwhere = mpath + ": hparams";
    Hparams h;
    h.n_vocab = need_int(hp, "n_vocab", hwhere, 1, 1 << 20);
    h.dim = need_int(hp, "dim", hwhere, 1, 1 << 16);
    h.n_layers = need_int(hp, "n_layers", hwhere, 1, 1024);
    h.n_heads = need_int(hp, "n_heads", hwhere, 1, h.dim);
    h.n_kv_heads = need_int(hp, "n_kv_heads", hwhere, 1, h.n_heads);
    h.n_ff = need_int(hp, "n_ff", hwhere, 1, 1 << 20);
    h.n_ctx = need_int(hp, "n_ctx", hwhere, 1, 1 << 20);
    h.rope_freq_base = need(hp, "rope_freq_base", hwhere).get<float>();
    h.norm_eps = need(hp, "norm_eps", hwhere).get<float>();
    h.tied = need(hp, "tied", hwhere).get<bool>();
    if (need(hp, "ffn_activation", hwhere) != "relu")
        throw ember::Error(hwhere + ": ffn_activation: expected \"relu\", found " + hp["ffn_activation"].dump());
    if (need(hp, "rope_pairs", hwhere) != "adjacent")
        throw ember::Error(hwhere + ": rope_pairs: expected \"adjacent\" (llama's (2i, 2i+1)), found " +
                           hp["rope_pairs"].dump());
    if (h.dim % h.n_heads != 0 || h.n_heads % h.n_kv_heads != 0)
        throw ember::Error(hwhere + ": dim must be a multiple of n_heads and n_heads of n_kv_heads");

    // The shards, concatenated.
    std::vector<uint8_t> blob;
    for (const json& s : need(m, "shards", mpath)) {
        const std::string path = args.dir + "/" + need(s, "file", mpath + ": shards").get<std::string>();
        std::vector<uint8_t> b = read_bytes(path);
        const uint64_t want = need(s, "bytes", mpath + ": shards").get<uint64_t>();
        if (b.size() != want)
            throw ember::Error(path + ": expected " + std::to_string(want) + " bytes (manifest), found " +
                               std::to_string(b.size()) + " (truncated transfer?)");
        blob.insert(blob.end(), b.begin(), b.end());
    }

    auto vocab_file = ember::GGUFFile::open(args.vocab);
    auto tok = ember::Tokenizer::from_gguf(*vocab_file);
    if (tok->n_vocab() != h.n_vocab)
        throw ember::Error(args.vocab + ": the tokenizer has " + std::to_string(tok->n_vocab()) +
                           " tokens, the weights n_vocab " + std::to_string(h.n_vocab));

    ember::GGUFWriter w;
    const std::string name = args.name.empty() ? m.value("name", std::string("ember tiny-relu")) : args.name;
    w.set_string("general.architecture", "llama");
    w.set_string("general.name", name);
    if (m.contains("description")) w.set_string("general.description", m["description"].get<std::string>());
    w.set_u32("general.file_type", 0);  // LLAMA_FTYPE_ALL_F32
    ember::ModelInfo info;
    info.n_ctx_train = h.n_ctx;
    info.dim = h.dim;
    info.n_layers = h.n_layers;
    info.n_ff = h.n_ff;
    info.n_heads = h.n_heads;
    info.n_kv_heads = h.n_kv_heads;
    info.n_rot = h.dim / h.n_heads;
    info.n_vocab = h.n_vocab;
    info.rope_freq_base = h.rope_freq_base;
    info.norm_eps = h.norm_eps;
    info.ffn_act = "relu";
    ember::llama_write_hparams(w, info);
    for (const auto& [key, value] : vocab_file->metadata())
        if (key.rfind("tokenizer.", 0) == 0) w.set_value(key, value);

    // Tensors in the manifest's order, each checked against the shapes the loader expects and its checksums.
    auto expected = expected_tensors(h);
    std::set<std::string> seen;
    for (const json& t : need(m, "tensors", mpath)) {
        const std::string tname = need(t, "name", mpath + ": tensors").get<std::string>();
        const std::string where = mpath + ": tensor '" + tname + "'";
        auto it = expected.find(tname);
        if (it == expected.end()) throw ember::Error(where + ": not a tensor of this architecture");
        if (!seen.insert(tname).second) throw ember::Error(where + ": listed twice");
        const std::vector<int64_t> shape = need(t, "shape", where).get<std::vector<int64_t>>();
        const auto [rows, cols] = it->second;
        const std::vector<int64_t> want = cols ? std::vector<int64_t>{rows, cols} : std::vector<int64_t>{rows};
        if (shape != want)
            throw ember::Error(where + ": expected shape " + json(want).dump() + ", found " + json(shape).dump());
        const uint64_t offset = need(t, "offset", where).get<uint64_t>();
        const uint64_t n = (uint64_t)rows * (uint64_t)(cols ? cols : 1);
        if (offset % 4 != 0 || offset + n * 4 > blob.size())
            throw ember::Error(where + ": offset " + std::to_string(offset) + " + " + std::to_string(n * 4) +
                               " bytes lies outside the shards (" + std::to_string(blob.size()) + " bytes)");
        const float* x = (const float*)(blob.data() + offset);
        double sum_abs = 0, sum_sq = 0;
        for (uint64_t i = 0; i < n; i++) {
            if (!std::isfinite(x[i]))
                throw ember::Error(where + ": element " + std::to_string(i) + " is not finite");
            sum_abs += std::fabs((double)x[i]);
            sum_sq += (double)x[i] * (double)x[i];
        }
        const double want_abs = need(t, "sum_abs", where).get<double>();
        const double want_sq = need(t, "sum_sq", where).get<double>();
        auto close = [](double a, double b) { return std::fabs(a - b) <= 1e-6 * std::max(std::fabs(b), 1e-30); };
        if (!close(sum_abs, want_abs) || !close(sum_sq, want_sq))
            throw ember::Error(where + ": checksums differ (sum|x| " + std::to_string(sum_abs) + " vs " +
                               std::to_string(want_abs) + ", sum x^2 " + std::to_string(sum_sq) + " vs " +
                               std::to_string(want_sq) + "): corrupted shards?");
        // GGUF's ne[0] is the contiguous dimension: PyTorch's (rows, cols) is ne {cols, rows}.
        const std::vector<int64_t> ne = cols ? std::vector<int64_t>{cols, rows} : std::vector<int64_t>{rows};
        w.add_tensor(tname, 0 /* F32 */, ne, x, n * 4);
    }
    for (const auto& [tname, shape] : expected)
        if (!seen.count(tname)) throw ember::Error(mpath + ": tensor '" + tname + "' is missing");
    w.write(args.out);
    std::fprintf(stderr, "ember-tiny-pack: wrote %s (%zu tensors, %s)\n", args.out.c_str(), seen.size(),
                 name.c_str());
}

}  // namespace

int main(int argc, char** argv) {
    return ember::app_run([&] {
        Args args;
        if (!parse_args(argc, argv, args)) return 0;
        try {
            pack(args);
        } catch (const json::exception& e) {  // a value of the wrong type
            throw ember::Error(args.dir + "/manifest.json: " + e.what());
        }
        return 0;
    });
}
