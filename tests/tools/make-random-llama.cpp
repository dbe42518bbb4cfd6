// Writes a llama-architecture GGUF of any shape with seeded random weights, for speed measurements at
// 7B-70B scale (the numbers it produces are meaningless text; the bytes read per token are real).
// Usage: ember-make-random-llama -o OUT.gguf [--dim 4096] [--layers 32] [--n-ff 11008] [--heads 32]
//        [--kv-heads 32] [--vocab 32000] [--type F16|BF16|F32|Q8_0|Q4_0] [--seed 1] [-t THREADS]
#include <cmath>
#include <cstdio>
#include <cstring>
#include <strings.h>
#include <string>
#include <thread>
#include <vector>

#include "engine/gguf.h"
#include "kernels-cpu/quant.h"
#include "models/llama.h"

namespace {

// SplitMix64: a fast seeded generator, one stream per row so the file is the same for any thread count.
uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

struct Options {
    std::string out;
    int dim = 4096, layers = 32, n_ff = 11008, heads = 32, kv_heads = 32, vocab = 32000, threads = 0;
    uint64_t seed = 1;
    ember::DType type = ember::DType::DTYPE_F16;
};

ember::DType parse_type(const std::string& s) {
    for (auto t : {ember::DType::DTYPE_F32, ember::DType::DTYPE_F16, ember::DType::DTYPE_BF16,
                   ember::DType::DTYPE_Q8_0, ember::DType::DTYPE_Q4_0})
        if (strcasecmp(s.c_str(), ember::dtype_name(t)) == 0) return t;
    throw ember::Error("--type: unknown type '" + s + "' (expected F32, F16, BF16, Q8_0 or Q4_0)");
}

// Uniform weights in [-a, a] with a = sqrt(3 / n_cols), so each output keeps the input's scale.
void add_random(ember::GGUFWriter& w, const std::string& name, int64_t n_rows, int64_t n_cols, ember::DType type,
                uint64_t seed, int threads) {
    const size_t row_bytes = ember::dtype_row_bytes(type, n_cols);
    w.add_tensor_generated(name, (uint32_t)type, {n_cols, n_rows}, row_bytes * n_rows, [=](uint8_t* dst) {
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; t++)
            pool.emplace_back([=] {
                std::vector<float> row(n_cols);
                const float a = std::sqrt(3.0f / (float)n_cols);
                for (int64_t r = t; r < n_rows; r += threads) {
                    uint64_t s = seed * 0x100000001B3ull + (uint64_t)r;
                    for (int64_t c = 0; c < n_cols; c++)
                        row[c] = a * ((float)(splitmix(s) >> 40) * (2.0f / 16777216.0f) - 1.0f);
                    ember::quantize_row(type, row.data(), dst + row_bytes * r, n_cols);
                }
            });
        for (auto& th : pool) th.join();
    });
}

void add_ones(ember::GGUFWriter& w, const std::string& name, int64_t n) {
    std::vector<float> ones(n, 1.0f);
    w.add_tensor(name, 0, {n}, ones.data(), ones.size() * 4);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    try {
        for (int i = 1; i < argc; i++) {
            const std::string a = argv[i];
            auto next = [&]() -> std::string {
                if (i + 1 >= argc) throw ember::Error(a + ": missing value");
                return argv[++i];
            };
            if (a == "-o") o.out = next();
            else if (a == "--dim") o.dim = std::stoi(next());
            else if (a == "--layers") o.layers = std::stoi(next());
            else if (a == "--n-ff") o.n_ff = std::stoi(next());
            else if (a == "--heads") o.heads = std::stoi(next());
            else if (a == "--kv-heads") o.kv_heads = std::stoi(next());
            else if (a == "--vocab") o.vocab = std::stoi(next());
            else if (a == "--type") o.type = parse_type(next());
            else if (a == "--seed") o.seed = std::stoull(next());
            else if (a == "-t") o.threads = std::stoi(next());
            else throw ember::Error("unknown argument '" + a + "'");
        }
        if (o.out.empty()) throw ember::Error("-o OUT.gguf is required");
        if (o.threads <= 0) o.threads = (int)std::max(1u, std::thread::hardware_concurrency());
        const int head_dim = o.dim / o.heads, kv_dim = o.kv_heads * head_dim;

        ember::GGUFWriter w;
        w.set_string("general.architecture", "llama");
        w.set_string("general.name", "random-llama");
        ember::ModelInfo hp;
        hp.n_ctx_train = 4096;
        hp.dim = o.dim;
        hp.n_layers = o.layers;
        hp.n_ff = o.n_ff;
        hp.n_heads = o.heads;
        hp.n_kv_heads = o.kv_heads;
        hp.n_rot = head_dim;
        hp.n_vocab = o.vocab;
        ember::llama_write_hparams(w, hp);
        // A SentencePiece vocabulary of the requested size: control tokens, the 256 byte tokens, then pieces.
        std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
        std::vector<int32_t> types = {2, 3, 3};
        char buf[32];
        for (int b = 0; b < 256; b++) {
            std::snprintf(buf, sizeof buf, "<0x%02X>", b);
            tokens.push_back(buf);
            types.push_back(6);
        }
        for (int i = (int)tokens.size(); i < o.vocab; i++) {
            tokens.push_back("\xe2\x96\x81tok" + std::to_string(i));
            types.push_back(1);
        }
        std::vector<float> scores(tokens.size());
        for (size_t i = 0; i < scores.size(); i++) scores[i] = -(float)i;
        w.set_string("tokenizer.ggml.model", "llama");
        w.set_string_array("tokenizer.ggml.tokens", tokens);
        w.set_f32_array("tokenizer.ggml.scores", scores);
        w.set_i32_array("tokenizer.ggml.token_type", types);
        w.set_u32("tokenizer.ggml.bos_token_id", 1);
        w.set_u32("tokenizer.ggml.eos_token_id", 2);
        w.set_u32("tokenizer.ggml.unknown_token_id", 0);

        uint64_t seed = o.seed;
        add_random(w, "token_embd.weight", o.vocab, o.dim, o.type, seed++, o.threads);
        add_ones(w, "output_norm.weight", o.dim);
        add_random(w, "output.weight", o.vocab, o.dim, o.type, seed++, o.threads);
        for (int l = 0; l < o.layers; l++) {
            const std::string p = "blk." + std::to_string(l) + ".";
            add_ones(w, p + "attn_norm.weight", o.dim);
            add_random(w, p + "attn_q.weight", o.dim, o.dim, o.type, seed++, o.threads);
            add_random(w, p + "attn_k.weight", kv_dim, o.dim, o.type, seed++, o.threads);
            add_random(w, p + "attn_v.weight", kv_dim, o.dim, o.type, seed++, o.threads);
            add_random(w, p + "attn_output.weight", o.dim, o.dim, o.type, seed++, o.threads);
            add_ones(w, p + "ffn_norm.weight", o.dim);
            add_random(w, p + "ffn_gate.weight", o.n_ff, o.dim, o.type, seed++, o.threads);
            add_random(w, p + "ffn_up.weight", o.n_ff, o.dim, o.type, seed++, o.threads);
            add_random(w, p + "ffn_down.weight", o.dim, o.n_ff, o.type, seed++, o.threads);
        }
        w.write(o.out);
        std::fprintf(stderr, "wrote %s\n", o.out.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ember-make-random-llama: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
