// ember-profile: the offline profiler (offline-profiler/profiler.h). Runs the dense model over a calibration text
// (on the GPU where the model's placement puts it), counts per-neuron firing frequencies, trains one activation
// predictor per layer (on the GPU when the model is there) (by default at the rank that
// minimises the bytes a token reads) and writes the profile GGUF (predictor/profile.h) atomically. Progress and the
// final per-layer table go to stderr.
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "apps/app-args.h"
#include "apps/app-io.h"
#include "apps/app-model.h"
#include "engine/cpu-info.h"
#include "engine/placement.h"
#include "offline-profiler/profiler.h"
#include "predictor/profile.h"

using namespace ember;

namespace {

int run(int argc, char** argv) {
    ModelParams mp;
    ProfileParams p;
    p.verbose = true;
    std::string corpus, out, rank = "auto", type = dtype_name(p.train.weight_type), train_on = "auto";
    int64_t max_tokens = p.max_tokens;
    ArgParser args("ember-profile",
                   "Profiles a ReLU model on a calibration text: per-layer neuron firing frequencies and one trained\n"
                   "activation predictor per layer, written as a profile GGUF.");
    args.add_string({"-m", "--model"}, &mp.path, "FNAME", "model path");
    args.add_string({"-f", "--file"}, &corpus, "FNAME", "calibration text file");
    args.add_string({"-o", "--output"}, &out, "FNAME", "profile file to write");
    args.add_i64({"--tokens"}, &max_tokens, "profile at most this many tokens, all kept as training samples");
    args.set_default_text("--tokens",
                          "4096; up to 16384 when the whole model and its predictors' training are on a GPU and host "
                          "RAM holds the samples");
    args.add_int({"-c", "--ctx-size"}, &p.n_ctx, "tokens per chunk, each from an empty context");
    args.add_int({"-t", "--threads"}, &p.n_threads, "number of threads (0 = physical cores)");
    args.add_int({"-ngl", "--gpu-layers", "--n-gpu-layers"}, &mp.n_gpu_layers,
                 "dense pass: layers on the GPU (-1 = as many as fit, 0 = CPU only)");
    app_add_placement_args(args, mp);
    args.add_choice({"--train-on"}, &train_on, {"auto", "cpu", "gpu"},
                    "where the predictors train: auto = on the GPU when the model loaded onto it");
    args.add_string({"--rank"}, &rank, "auto|N",
                    "predictor hidden width: auto = per layer the candidate (32, 64, ... up to min(1024, dim/2))\n"
                    "with the fewest expected bytes per token, N = this width for every layer");
    args.add_choice({"--predictor-type"}, &type, {"f32", "f16", "q8_0"},
                    "type the predictor weights are stored and run in (q8_0: widths multiples of 32)");
    args.add_float({"--recall"}, &p.train.recall_target, "held-out recall the threshold must reach");
    args.add_int({"--epochs"}, &p.train.epochs, "training passes over the samples");
    args.add_float({"--lr"}, &p.train.lr, "Adam's step size for the predictor weights");
    if (!app_parse_args(args, argc, argv)) return 0;  // --help or --version
    if (corpus.empty()) throw Error("no calibration text given (use -f FILE)");
    if (out.empty()) throw Error("no output file given (use -o FILE)");
    if (p.n_ctx < 1) throw Error("-c: invalid value '" + std::to_string(p.n_ctx) + "' (expected >= 1)");
    const bool tokens_given = args.seen("--tokens");
    if (tokens_given && max_tokens < 2)
        throw Error("--tokens: invalid value '" + std::to_string(max_tokens) + "' (expected >= 2)");
    app_check_placement(args, mp);
    p.train.weight_type = type == "f32" ? DType::DTYPE_F32 : type == "f16" ? DType::DTYPE_F16 : DType::DTYPE_Q8_0;
    p.auto_rank = rank == "auto";
    if (!p.auto_rank) {
        size_t used = 0;
        int r = 0;
        try {
            r = std::stoi(rank, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used != rank.size() || r < 1)
            throw Error("--rank: invalid value '" + rank + "' (expected auto or an integer >= 1)");
        const int block = dtype_block_elems(p.train.weight_type);
        if (r % block != 0)
            throw Error("--rank: invalid value '" + rank + "' for --predictor-type " + type +
                        " (expected a multiple of " + std::to_string(block) + ")");
        p.train.rank = r;
    }
    if (p.train.epochs < 1)
        throw Error("--epochs: invalid value '" + std::to_string(p.train.epochs) + "' (expected >= 1)");
    if (!(p.train.lr > 0.0f) || !std::isfinite(p.train.lr))
        throw Error("--lr: invalid value (expected a positive number)");
    if (!(p.train.recall_target > 0.0f && p.train.recall_target <= 1.0f))
        throw Error("--recall: invalid value (expected 0 < x <= 1)");
    const std::string text = app_read_file("-f", corpus);

    double load_ms = 0;
    std::unique_ptr<Model> model = app_load_model(mp, &load_ms);
    app_log_model_info(*model, "model");
    const bool on_gpu = model->gpu() != nullptr;
    if (train_on == "gpu" && !on_gpu)
        throw Error("--train-on gpu: the model did not load onto a GPU (no CUDA device, a build without CUDA, or "
                    "-ngl 0)");
    p.train.gpu = train_on == "gpu" || (train_on == "auto" && on_gpu);
    if (!tokens_given) {
        // Beside a model that only partly fits, the card has little room left and training falls back to the CPU.
        const bool whole_model_on_gpu = model->placement().mode == PlacementMode::PLACEMENT_GPU;
        max_tokens = profile_default_tokens(p.train.gpu && whole_model_on_gpu,
                                            profile_sample_bytes_per_token(model->info()),
                                            host_physical_memory_bytes());
        std::fprintf(stderr, "profile: at most %lld calibration tokens (--tokens sets another count)\n",
                     (long long)max_tokens);
    }
    p.max_tokens = max_tokens;
    p.max_samples = max_tokens;
    std::fprintf(stderr, "profile: dense pass on %s, predictors train on the %s\n", model->backend().c_str(),
                 p.train.gpu ? "GPU" : "CPU");
    if (model->info().ffn_act != "relu")
        std::fprintf(stderr, "profile: warning: the FFN activation is %s, which is never exactly zero; every neuron "
                     "will count as firing\n", model->info().ffn_act.c_str());
    const Tokenizer& tok = model->tokenizer();
    const std::vector<int32_t> tokens = tok.encode(text, tok.add_bos_default(), false);
    std::vector<ProfileLayerReport> report;
    const ModelProfile prof = profile_model(*model, tokens, p, &report);
    profile_write(prof, out);
    std::fputs(profile_table(prof, report).c_str(), stderr);
    std::fprintf(stderr, "profile: wrote %s (%d layers, %llu tokens)\n", out.c_str(), prof.n_layers,
                 (unsigned long long)prof.n_tokens);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return app_run([&] { return run(argc, argv); });
}
