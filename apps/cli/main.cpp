// ember-cli: text generation with llama.cpp's llama-cli flags. The prompt and the generated text go to stdout,
// flushed per token; the model summary, settings and timings go to stderr.
#include <cstdio>

#include "apps/app-args.h"
#include "apps/app-io.h"
#include "apps/app-model.h"
#include "apps/cli/cli.h"
#include "engine/chat-template.h"

using namespace ember;

namespace {

// Returns false when the program should exit 0 at once (--help, --version).
bool parse_args(int argc, char** argv, CliParams& p) {
    bool no_escape = false, no_display = false;
    int64_t seed = -1;
    int cpu_strict = 0;
    ArgParser args("ember-cli", "Generates text from a prompt, or chats (-cnv), with a GGUF model.");
    args.add_string({"-m", "--model"}, &p.model.path, "FNAME", "model path");
    args.add_string({"-p", "--prompt"}, &p.prompt, "PROMPT", "prompt to start generation with");
    args.add_string({"-f", "--file"}, &p.prompt_file, "FNAME", "a file containing the prompt");
    args.add_int({"-n", "--n-predict"}, &p.generate.n_predict,
                 "number of tokens to predict (-1 or -2 = until end of generation or a full context)");
    args.add_int({"-c", "--ctx-size"}, &p.session.n_ctx, "size of the prompt context (0 = from the model, at most 4096)");
    args.add_int({"-t", "--threads"}, &p.session.n_threads, "number of threads (0 or -1 = physical cores)");
    args.add_int({"--cpu-strict"}, &cpu_strict, "1: pin each worker thread to its own physical core (0 = the OS places them)");
    args.add_int({"-b", "--batch-size"}, &p.session.n_batch, "tokens per prompt-processing step");
    CacheTypeArgs cache_types;
    app_add_cache_type_args(args, cache_types);
    args.add_i64({"-s", "--seed"}, &seed, "RNG seed (-1 = random)");
    args.add_float({"--temp"}, &p.sampler.temp, "temperature (<= 0: greedy)");
    args.add_int({"--top-k"}, &p.sampler.top_k, "top-k sampling (0 = off)");
    args.add_float({"--top-p"}, &p.sampler.top_p, "top-p sampling (1.0 = off)");
    args.add_float({"--min-p"}, &p.sampler.min_p, "min-p sampling (0.0 = off)");
    args.add_float({"--repeat-penalty"}, &p.sampler.repeat_penalty, "penalize repeated tokens (1.0 = off)");
    args.add_int({"--repeat-last-n"}, &p.sampler.repeat_last_n,
                 "last n tokens considered for the penalty (0 = off, -1 = context size)");
    args.add_flag({"--ignore-eos"}, &p.generate.ignore_eos, "ignore end-of-generation tokens and keep generating");
    args.add_int({"-ngl", "--gpu-layers", "--n-gpu-layers"}, &p.model.n_gpu_layers,
                 "layers to offload to the GPU, dense (-1 = automatic placement, 0 = CPU only)");
    app_add_placement_args(args, p.model);
    args.add_string({"--profile"}, &p.model.profile_path, "FNAME",
                    "profile from ember-profile: run the FFN sparse through its predictors (default: dense)");
    args.add_flag({"--no-display-prompt"}, &no_display, "do not echo the prompt");
    args.add_flag({"-e", "--escape"}, &p.escape, "process escapes (\\n, \\r, \\t, \\', \\\", \\\\) in prompts (on by default)");
    args.add_flag({"--no-escape"}, &no_escape, "do not process escapes");
    args.add_flag({"-i", "--interactive"}, &p.interactive, "after each reply, read a line from stdin and continue");
    args.add_flag({"-cnv", "--conversation"}, &p.conversation,
                  "chat: each stdin line is a user turn, formatted with the chat template; EOF ends");
    std::string names;
    for (const std::string& n : chat_template_names()) names += (names.empty() ? "" : ", ") + n;
    const std::string template_help = "chat template to use instead of the model's: " + names;
    args.add_string({"--chat-template"}, &p.chat_template, "NAME", template_help.c_str());
    args.add_string({"-sys", "--system-prompt"}, &p.system_prompt, "PROMPT", "system prompt (conversation mode)");
    if (!app_parse_args(args, argc, argv)) return false;  // --help or --version
    // Values that parse but make no sense.
    if (p.generate.n_predict < -2)
        throw Error("-n: invalid value '" + std::to_string(p.generate.n_predict) + "' (expected >= -2)");
    if (p.session.n_ctx < 0) throw Error("-c: invalid value '" + std::to_string(p.session.n_ctx) + "' (expected >= 0)");
    if (p.session.n_batch < 1) throw Error("-b: invalid value '" + std::to_string(p.session.n_batch) + "' (expected >= 1)");
    if (p.session.n_threads < 0) p.session.n_threads = 0;
    if (cpu_strict != 0 && cpu_strict != 1)
        throw Error("--cpu-strict: invalid value '" + std::to_string(cpu_strict) + "' (expected 0 or 1)");
    p.session.cpu_strict = cpu_strict == 1;
    app_apply_cache_types(cache_types, p.session);
    app_apply_cache_types(cache_types, p.model);
    app_check_placement(args, p.model);
    p.model.n_ctx = p.session.n_ctx;
    if (p.sampler.repeat_last_n < -1)
        throw Error("--repeat-last-n: invalid value '" + std::to_string(p.sampler.repeat_last_n) + "' (expected >= -1)");
    if (p.sampler.repeat_penalty <= 0)
        throw Error("--repeat-penalty: invalid value '" + std::to_string(p.sampler.repeat_penalty) + "' (expected > 0)");
    if (seed < -1) throw Error("-s: invalid value '" + std::to_string(seed) + "' (expected -1 or a seed >= 0)");
    p.sampler.seed = seed == -1 ? 0xFFFFFFFFull : (uint64_t)seed;
    if (!p.chat_template.empty()) {
        bool known = false;
        for (const std::string& n : chat_template_names()) known |= n == p.chat_template;
        if (!known) throw Error("--chat-template: invalid value '" + p.chat_template + "' (expected one of " + names + ")");
    }
    if (no_escape) p.escape = false;
    p.display_prompt = !no_display;
    if (!p.prompt_file.empty()) {
        if (args.seen("-p")) throw Error("-f: give either -p or -f, not both");
        p.prompt = app_read_file("-f", p.prompt_file, "prompt");
        if (!p.prompt.empty() && p.prompt.back() == '\n') p.prompt.pop_back();  // as llama.cpp does
    } else if (p.escape) {
        p.prompt = args_unescape(p.prompt);
    }
    if (p.escape) p.system_prompt = args_unescape(p.system_prompt);
    if (p.model.path.empty()) throw Error("no model given (use -m FILE; see --help)");
    if (p.prompt.empty() && !p.interactive && !p.conversation)
        throw Error("no prompt given: use -p TEXT or -f FILE, or -i / -cnv to type it");
    return true;
}

void log_sampler(const Sampler& s, const Session& session, const SessionParams& sp_session, int n_predict) {
    const SamplerParams& sp = s.params();
    std::fprintf(stderr, "sampler seed: %llu\n", (unsigned long long)s.seed());
    std::fprintf(stderr,
                 "sampler params: repeat_last_n = %d, repeat_penalty = %.3f, top_k = %d, top_p = %.3f, "
                 "min_p = %.3f, temp = %.3f\n",
                 sp.repeat_last_n, sp.repeat_penalty, sp.top_k, sp.top_p, sp.min_p, sp.temp);
    std::fprintf(stderr, "sampler chain: %s\n",
                 sp.temp <= 0 ? "penalties -> greedy" : "penalties -> top-k -> top-p -> min-p -> temp -> dist");
    std::fprintf(stderr, "generate: n_ctx = %d, n_predict = %d, n_threads = %d, kv cache = %s / %s\n\n",
                 session.n_ctx(), n_predict, session.n_threads(), kv_type_name(sp_session.cache_type_k),
                 kv_type_name(sp_session.cache_type_v));
}

int run(int argc, char** argv) {
    CliParams p;
    if (!parse_args(argc, argv, p)) return 0;
    std::fprintf(stderr, "%s\n", version_string().c_str());
    double load_ms = 0;
    std::unique_ptr<Model> model = app_load_model(p.model, &load_ms);
    app_log_model_info(*model, "model");
    Session session(*model, p.session);
    if (p.sampler.repeat_last_n == -1) p.sampler.repeat_last_n = session.n_ctx();
    Sampler sampler(p.sampler, model->info().n_vocab);
    log_sampler(sampler, session, p.session, p.generate.n_predict);
    Generator gen(*model, session, sampler);
    GenerateTimings total;

    if (p.conversation) {
        cli_conversation(gen, p, &total);
    } else {
        std::vector<int32_t> tokens;
        if (!p.prompt.empty()) {
            const Tokenizer& tok = model->tokenizer();
            tokens = tok.encode(p.prompt, tok.add_bos_default(), true);
            if ((int)tokens.size() > session.n_ctx() - 4)  // llama.cpp's margin
                throw Error("prompt is too long (" + std::to_string(tokens.size()) + " tokens, max " +
                            std::to_string(session.n_ctx() - 4) + " with -c " + std::to_string(session.n_ctx()) + ")");
            if (p.display_prompt) cli_print_text(p.prompt);
        }
        if (p.interactive) {
            cli_interactive(gen, p, tokens, &total);
        } else {
            const GenerateResult r = gen.generate(tokens, p.generate, cli_print_text);
            total += r.timings;
            cli_print_finish(r, session);
            if (r.finish == FinishReason::FINISH_EOG) std::fprintf(stderr, " [end of text]\n");
        }
    }
    cli_print_timings(total, load_ms);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return app_run([&] { return run(argc, argv); });
}
