// ember-bench: llama-bench-style throughput. pp<N>: one evaluation of N random tokens (BOS first) in a fresh
// session; tg<N>: N single-token evaluations from an empty context (BOS first, then random tokens). Each test runs
// -r times after one warm-up; t/s is the mean and sample standard deviation over the repetitions. After the table,
// token generation is set against memory bandwidth: bytes of weights read per token times t/s gives the GB/s
// achieved, and the bandwidth (--mem-bw, else measured at start) divided by bytes per token bounds t/s.
// --profile takes a comma-separated list ("none" = dense FFN): each entry loads the model with that profile and runs
// every test, so dense and sparse are measured in one run. Sparse rows count the bytes the decode steps actually
// read (predictors and the active neurons' rows), and the summary sets the speed-up against the ratio of bytes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "apps/app-args.h"
#include "apps/app-model.h"
#include "engine/memory-bandwidth.h"
#include "engine/stats.h"

using namespace ember;

namespace {

struct BenchParams {
    ModelParams model;
    std::vector<std::string> profiles{""};  // --profile entries; "" = dense
    int n_prompt = 512;     // pp test size; 0: no pp test
    int n_gen = 128;        // tg test size; 0: no tg test
    int reps = 5;
    int n_threads = 0;      // 0: physical cores
    int n_batch = 2048;     // prompt tokens per evaluation step
    std::string output = "md";
    float mem_bw = 0;       // GB/s; 0: measure
    bool no_warmup = false;
};

struct TestResult {
    std::string name;          // "pp512", "tg128"
    int n_prompt = 0, n_gen = 0;
    int n_threads = 0;
    std::vector<double> ns;    // per repetition
    std::vector<double> ts;    // tokens per second per repetition
    std::string time;          // start time, ISO 8601
    bool sparse = false;       // the model ran with a profile
    SparseFfnStats sparse_stats;  // summed over the timed repetitions (sparse only)
};

// Bytes of weights read per generated token: the sparse FFN's measured count, else the dense count.
double bytes_per_token(const TestResult& r, const ModelInfo& info) {
    if (r.sparse && r.sparse_stats.decode_tokens > 0) return r.sparse_stats.bytes_per_decode_token();
    return (double)info.weight_bytes_per_token;
}

std::string iso_time_now() {
    std::time_t t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    return buf;
}

// Runs one test: pp (n_prompt > 0) or tg (n_gen > 0).
TestResult run_test(const Model& model, const BenchParams& p, int n_prompt, int n_gen) {
    const Tokenizer& tok = model.tokenizer();
    const int n_vocab = model.info().n_vocab;
    const int n = n_prompt + n_gen;
    std::mt19937 rng(1234);  // the same tokens every run
    std::uniform_int_distribution<int32_t> any(0, n_vocab - 1);
    std::vector<int32_t> tokens(n);
    for (int32_t& t : tokens) t = any(rng);
    if (tok.add_bos_default() && tok.bos() >= 0) tokens[0] = tok.bos();

    SessionParams sp;
    sp.n_ctx = n;
    sp.n_batch = std::max(1, std::min(p.n_batch, n));
    sp.n_threads = p.n_threads;

    TestResult r;
    r.name = (n_prompt > 0 ? "pp" : "tg") + std::to_string(n);
    r.n_prompt = n_prompt;
    r.n_gen = n_gen;
    r.time = iso_time_now();
    r.sparse = model.sparse();
    auto once = [&](int count) {  // evaluates the first `count` tokens; returns nanoseconds
        Session session(model, sp);  // a fresh context per run, outside the timing
        r.n_threads = session.n_threads();
        const auto t0 = std::chrono::steady_clock::now();
        if (n_prompt > 0) {
            session.eval(std::vector<int32_t>(tokens.begin(), tokens.begin() + count), false);
        } else {
            for (int i = 0; i < count; i++) session.eval({tokens[i]}, false);
        }
        const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
        r.sparse_stats += session.sparse_stats();
        return ns;
    };
    if (!p.no_warmup) once(n_prompt > 0 ? n : 1);  // llama-bench's warm-up: the whole prompt, or one token
    r.sparse_stats = SparseFfnStats();              // count the timed repetitions only
    for (int i = 0; i < p.reps; i++) {
        const double ns = once(n);
        r.ns.push_back(ns);
        r.ts.push_back(1e9 * n / ns);
    }
    return r;
}


std::string fmt(const char* f, double a, double b = 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, a, b);
    return buf;
}

// A markdown table with right-aligned columns except those flagged left.
void print_table(const std::vector<std::string>& header, const std::vector<bool>& left,
                 const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> w(header.size());
    for (size_t c = 0; c < header.size(); c++) {
        w[c] = std::max<size_t>(header[c].size(), 5);
        for (const auto& row : rows) w[c] = std::max(w[c], row[c].size());
    }
    auto line = [&](const std::vector<std::string>& cells) {
        std::string s = "|";
        for (size_t c = 0; c < cells.size(); c++) {
            // Width counts bytes; "±" is 2 bytes for 1 column, so pad to keep the columns aligned.
            size_t extra = 0;
            for (size_t k = 0; k + 1 < cells[c].size(); k++) extra += (unsigned char)cells[c][k] == 0xC2;
            std::string pad(w[c] > cells[c].size() - extra ? w[c] - (cells[c].size() - extra) : 0, ' ');
            s += " " + (left[c] ? cells[c] + pad : pad + cells[c]) + " |";
        }
        std::printf("%s\n", s.c_str());
    };
    line(header);
    std::string sep = "|";
    for (size_t c = 0; c < header.size(); c++) sep += " " + std::string(w[c] - 1, '-') + (left[c] ? "-" : ":") + " |";
    std::printf("%s\n", sep.c_str());
    for (const auto& row : rows) line(row);
}

int run(int argc, char** argv) {
    BenchParams p;
    ArgParser args("ember-bench", "Measures prompt processing (pp) and token generation (tg) speed, llama-bench style.");
    args.add_string({"-m", "--model"}, &p.model.path, "FNAME", "model path");
    args.add_int({"-p", "--n-prompt"}, &p.n_prompt, "prompt tokens of the pp test (0 = no pp test)");
    args.add_int({"-n", "--n-gen"}, &p.n_gen, "generated tokens of the tg test (0 = no tg test)");
    args.add_int({"-r", "--repetitions"}, &p.reps, "repetitions of each test");
    args.add_int({"-t", "--threads"}, &p.n_threads, "number of threads (0 = physical cores)");
    args.add_int({"-b", "--batch-size"}, &p.n_batch, "prompt tokens per evaluation step");
    args.add_int({"-ngl", "--n-gpu-layers"}, &p.model.n_gpu_layers, "layers to offload to the GPU");
    std::string profiles;
    args.add_string({"--profile"}, &profiles, "LIST",
                    "comma-separated profiles from ember-profile, each run in turn; 'none' = dense FFN");
    args.add_choice({"-o", "--output"}, &p.output, {"md", "json"}, "output format");
    args.add_float({"--mem-bw"}, &p.mem_bw, "memory bandwidth in GB/s for the bound (0 = measure)");
    args.add_flag({"--no-warmup"}, &p.no_warmup, "skip the warm-up run of each test");
    if (!app_parse_args(args, argc, argv)) return 0;  // --help or --version
    if (p.n_prompt < 0) throw Error("-p: invalid value '" + std::to_string(p.n_prompt) + "' (expected >= 0)");
    if (p.n_gen < 0) throw Error("-n: invalid value '" + std::to_string(p.n_gen) + "' (expected >= 0)");
    if (p.n_prompt == 0 && p.n_gen == 0) throw Error("-p and -n are both 0: nothing to measure");
    if (p.reps < 1) throw Error("-r: invalid value '" + std::to_string(p.reps) + "' (expected >= 1)");
    if (p.n_threads < 0) p.n_threads = 0;
    if (p.n_batch < 1) throw Error("-b: invalid value '" + std::to_string(p.n_batch) + "' (expected >= 1)");
    if (p.model.n_gpu_layers < 0)
        throw Error("-ngl: invalid value '" + std::to_string(p.model.n_gpu_layers) + "' (expected >= 0)");
    if (!profiles.empty()) {
        p.profiles.clear();
        size_t b = 0;
        while (true) {
            const size_t e = profiles.find(',', b);
            std::string item = profiles.substr(b, e == std::string::npos ? std::string::npos : e - b);
            if (item.empty()) throw Error("--profile: empty entry in '" + profiles + "' (use 'none' for dense)");
            p.profiles.push_back(item == "none" ? "" : item);
            if (e == std::string::npos) break;
            b = e + 1;
        }
    }
    if (p.mem_bw < 0) throw Error("--mem-bw: invalid value '" + fmt("%g", p.mem_bw) + "' (expected >= 0)");

    std::fprintf(stderr, "%s\n", version_string().c_str());
    double mem_bw = p.mem_bw;
    std::string mem_bw_source = "given with --mem-bw";
    if (mem_bw <= 0) {
        const int n_hw = std::max(1u, std::thread::hardware_concurrency());
        mem_bw = memory_bandwidth_probe(2ull << 30, n_hw, 5);
        mem_bw_source = "measured: F32 matvec streaming 2 GiB, " + std::to_string(n_hw) + " threads, best of 5";
    }
    std::fprintf(stderr, "memory bandwidth: %.2f GB/s (%s)\n", mem_bw, mem_bw_source.c_str());

    struct Run {
        std::string profile;  // "" = dense
        ModelInfo info;
        std::string backend;
        uint64_t predictor_bytes = 0;
        std::vector<TestResult> results;
    };
    std::vector<Run> runs;
    for (const std::string& profile : p.profiles) {
        ModelParams mp = p.model;
        mp.profile_path = profile;
        double load_ms = 0;
        std::unique_ptr<Model> model = app_load_model(mp, &load_ms);
        if (runs.empty()) app_log_model_info(*model, "model");
        if (!profile.empty())
            std::fprintf(stderr, "profile: %s: predictors %s, loaded in %.0f ms\n", profile.c_str(),
                         app_format_size(model->predictor_bytes()).c_str(), load_ms);
        Run run;
        run.profile = profile;
        run.info = model->info();
        run.backend = model->backend();
        run.predictor_bytes = model->predictor_bytes();
        if (p.n_prompt > 0) run.results.push_back(run_test(*model, p, p.n_prompt, 0));
        if (p.n_gen > 0) run.results.push_back(run_test(*model, p, 0, p.n_gen));
        runs.push_back(std::move(run));
    }

    const ModelInfo& info = runs[0].info;
    const std::string desc = app_model_description(info);
    if (p.output == "json") {
        nlohmann::ordered_json out = nlohmann::ordered_json::array();
        for (const Run& run : runs) {
            for (const TestResult& r : run.results) {
                const double ts = stats_mean(r.ts);
                const double bpt = bytes_per_token(r, info);
                nlohmann::ordered_json j;
                j["build"] = version_string();
                j["model_filename"] = p.model.path;
                j["model_type"] = desc;
                j["model_size"] = info.weight_bytes;
                j["model_n_params"] = info.n_params;
                j["backend"] = run.backend;
                j["ffn"] = r.sparse ? "sparse" : "dense";
                j["profile"] = run.profile;
                j["n_batch"] = p.n_batch;
                j["n_threads"] = r.n_threads;
                j["n_gpu_layers"] = p.model.n_gpu_layers;
                j["n_prompt"] = r.n_prompt;
                j["n_gen"] = r.n_gen;
                j["test"] = r.name;
                j["test_time"] = r.time;
                j["avg_ns"] = (uint64_t)stats_mean(r.ns);
                j["stddev_ns"] = (uint64_t)stats_stddev(r.ns);
                j["avg_ts"] = ts;
                j["stddev_ts"] = stats_stddev(r.ts);
                j["samples_ns"] = r.ns;
                j["samples_ts"] = r.ts;
                j["weight_bytes_per_token"] = bpt;
                j["mem_bw_gbs"] = mem_bw;
                if (r.sparse) {
                    j["predictor_bytes"] = run.predictor_bytes;
                    j["predicted_active_share"] = r.sparse_stats.predicted_share();
                }
                if (r.n_gen > 0) {
                    j["achieved_gbs"] = bpt * ts / 1e9;
                    j["bw_bound_ts"] = bpt > 0 ? mem_bw * 1e9 / bpt : 0.0;
                }
                out.push_back(j);
            }
        }
        std::printf("%s\n", out.dump(2).c_str());
        return 0;
    }

    std::vector<std::vector<std::string>> rows;
    for (const Run& run : runs)
        for (const TestResult& r : run.results)
            rows.push_back({desc, app_format_size(info.weight_bytes), app_format_params(info.n_params), run.backend,
                            r.sparse ? "sparse" : "dense", std::to_string(r.n_threads), r.name,
                            fmt("%.2f ± %.2f", stats_mean(r.ts), stats_stddev(r.ts))});
    print_table({"model", "size", "params", "backend", "ffn", "threads", "test", "t/s"},
                {true, false, false, true, true, false, false, false}, rows);

    std::printf("\nweights read per generated token: %s dense; memory bandwidth: %.2f GB/s (%s)\n",
                app_format_size(info.weight_bytes_per_token).c_str(), mem_bw, mem_bw_source.c_str());
    std::vector<std::vector<std::string>> bw_rows;
    const TestResult* dense_tg = nullptr;
    for (const Run& run : runs) {
        for (const TestResult& r : run.results) {
            if (r.n_gen == 0) continue;
            if (!r.sparse && !dense_tg) dense_tg = &r;
            const double ts = stats_mean(r.ts);
            const double bpt = bytes_per_token(r, info);
            const double achieved = bpt * ts / 1e9;
            const double bound = bpt > 0 ? mem_bw * 1e9 / bpt : 0.0;
            bw_rows.push_back({r.sparse ? "sparse" : "dense", r.name, fmt("%.2f", ts),
                               app_format_size((uint64_t)bpt),
                               r.sparse ? fmt("%.1f %%", 100.0 * r.sparse_stats.predicted_share()) : "100 %",
                               fmt("%.2f", achieved), fmt("%.1f %%", 100.0 * achieved / mem_bw), fmt("%.2f", bound)});
        }
    }
    if (!bw_rows.empty()) {
        std::printf("\n");
        print_table({"ffn", "test", "t/s", "bytes/token", "neurons run", "GB/s achieved", "of bandwidth",
                     "t/s bandwidth allows"},
                    {true, false, false, false, false, false, false, false}, bw_rows);
    }
    // Sparse against dense: the speed-up can at best match the ratio of bytes read per token.
    if (dense_tg) {
        for (const Run& run : runs) {
            for (const TestResult& r : run.results) {
                if (!r.sparse || r.n_gen == 0) continue;
                const double speedup = stats_mean(r.ts) / stats_mean(dense_tg->ts);
                const double bytes_ratio = bytes_per_token(*dense_tg, info) / bytes_per_token(r, info);
                std::printf("\nsparse %s vs dense: speed-up %.2fx, bytes ratio %.2fx: %.0f %% of the bytes bound "
                            "(profile %s, predictors %s)\n",
                            r.name.c_str(), speedup, bytes_ratio, 100.0 * speedup / bytes_ratio, run.profile.c_str(),
                            app_format_size(run.predictor_bytes).c_str());
            }
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return app_run([&] { return run(argc, argv); });
}
