// ember-bench: llama-bench-style throughput. pp<N>: one evaluation of N random tokens (BOS first) in a fresh
// session; tg<N>: N single-token evaluations from an empty context (BOS first, then random tokens). Each test runs
// -r times after one warm-up; t/s is the mean and sample standard deviation over the repetitions. After the table,
// token generation is set against memory bandwidth: bytes of weights read per token times t/s gives the GB/s
// achieved, and the bandwidth (--mem-bw, else measured at start) divided by bytes per token bounds t/s.
// --profile takes a comma-separated list ("none" = dense FFN): each entry loads the model with that profile and runs
// every test, so dense and sparse are measured in one run. Sparse rows count the bytes the decode steps actually
// read (predictors and the active neurons' rows), and the summary sets the speed-up against the ratio of bytes.
// -ngl and --vram-budget also take lists: every combination of profile, -ngl and budget is loaded and measured in
// turn; with --interleave they are all loaded first and each test's repetitions go round-robin across them, so that
// a machine whose speed drifts (other load, clocks, a neighbour's memory traffic) slows every configuration alike and
// their ratios hold (all of them then need their memory at once). With a GPU, each side's bytes per token (host RAM
// and VRAM) bound t/s at 1 / max(host bytes / host bandwidth, VRAM bytes / VRAM bandwidth), and, taken in the order
// the layers need them, at the bound in layer order (engine/decode-bound.h); the summary sets every GPU run against
// the first dense layer-offload run (-ngl N) and --timeline FILE writes one traced decode step of each GPU run.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <ctime>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "apps/app-args.h"
#include "apps/app-io.h"
#include "apps/app-model.h"
#include "engine/decode-bound.h"
#include "engine/memory-bandwidth.h"
#include "engine/placement.h"
#include "engine/stats.h"

using namespace ember;

namespace {

struct BenchParams {
    ModelParams model;
    std::vector<std::string> profiles{""};  // --profile entries; "" = dense
    std::vector<int> ngls{-1};              // -ngl entries; -1 = automatic placement
    std::vector<double> budgets{-1};        // --vram-budget entries in GiB; -1 = free VRAM minus a margin
    std::string timeline_path;              // --timeline: one traced decode step per GPU run, as JSON
    int n_prompt = 512;     // pp test size; 0: no pp test
    int n_gen = 128;        // tg test size; 0: no tg test
    int n_depth = 0;        // tokens already in the context when each test starts (llama-bench's -d)
    CacheTypeArgs cache_types;  // -ctk / -ctv
    int reps = 5;
    int n_threads = 0;      // 0: physical cores
    int cpu_strict = 0;     // 1: workers pinned to physical cores
    int n_batch = 2048;     // prompt tokens per evaluation step
    std::string output = "md";
    float mem_bw = 0;       // GB/s; 0: measure
    bool no_warmup = false;
    bool interleave = false;  // every configuration loaded first, the repetitions round-robin across them
};

struct TestResult {
    std::string name;          // "pp512", "tg128", "tg128 @ d1024"
    int n_prompt = 0, n_gen = 0, n_depth = 0;
    int n_threads = 0;
    std::vector<double> ns;    // per repetition
    std::vector<double> ts;    // tokens per second per repetition
    std::string time;          // start time, ISO 8601
    bool sparse = false;       // the model ran with a profile
    SparseFfnStats sparse_stats;  // summed over the timed repetitions (sparse only)
    DecodeTimeline timeline;      // GPU runs with --timeline: one traced decode step after the repetitions
};

// Bytes of weights read from host memory per generated token: the sparse FFN's measured count, else the dense count
// (with a GPU: the placement's host share, exact for dense layers).
double bytes_per_token(const TestResult& r, const ModelInfo& info, const Placement& pl) {
    if (r.sparse && r.sparse_stats.decode_tokens > 0) return r.sparse_stats.bytes_per_decode_token();
    if (pl.mode != PlacementMode::PLACEMENT_CPU) return pl.cpu_bytes_per_token;
    return (double)info.weight_bytes_per_token;
}

// The same from VRAM (0 without a GPU).
double gpu_bytes_per_token(const TestResult& r, const Placement& pl) {
    if (pl.mode == PlacementMode::PLACEMENT_CPU) return 0.0;
    if (r.sparse && r.sparse_stats.decode_tokens > 0) return r.sparse_stats.gpu_bytes_per_decode_token();
    return pl.gpu_bytes_per_token;
}

// Both sides' bytes per generated token, with the split FFN layers' halves where the run measured them.
DecodeBytes decode_bytes(const TestResult& r, const ModelInfo& info, const Placement& pl) {
    DecodeBytes b;
    b.host = bytes_per_token(r, info, pl);
    b.gpu = gpu_bytes_per_token(r, pl);
    const SparseFfnStats& s = r.sparse_stats;
    if (r.sparse && s.decode_tokens > 0 && pl.mode != PlacementMode::PLACEMENT_CPU) {
        for (uint64_t v : s.decode_split_host_bytes) b.split_host.push_back((double)v / (double)s.decode_tokens);
        for (uint64_t v : s.decode_split_gpu_bytes) b.split_gpu.push_back((double)v / (double)s.decode_tokens);
    }
    return b;
}

std::string iso_time_now() {
    std::time_t t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    return buf;
}

// One test: pp (n_prompt > 0) or tg (n_gen > 0), after p.n_depth tokens of context (evaluated as a prompt,
// untimed, in each repetition's fresh session). warm_up(), then repetition() as often as wanted (the caller may run
// other tests in between), then finish() for the result (with --timeline, after one traced decode step).
class TestRun {
public:
    TestRun(const Model& model, const BenchParams& p, int n_prompt, int n_gen)
        : model_(model), p_(p), n_prompt_(n_prompt), n_gen_(n_gen) {
        const Tokenizer& tok = model.tokenizer();
        const int n_vocab = model.info().n_vocab;
        const int n = n_prompt + n_gen, depth = p.n_depth;
        std::mt19937 rng(1234);  // the same tokens every run
        std::uniform_int_distribution<int32_t> any(0, n_vocab - 1);
        tokens_.resize(depth + n);  // the context, then the test's tokens
        for (int32_t& t : tokens_) t = any(rng);
        if (tok.add_bos_default() && tok.bos() >= 0) tokens_[0] = tok.bos();

        sp_.n_ctx = depth + n;
        sp_.n_batch = std::max(1, std::min(p.n_batch, std::max(n, depth)));
        sp_.n_threads = p.n_threads;
        sp_.cpu_strict = p.cpu_strict != 0;
        app_apply_cache_types(p.cache_types, sp_);

        r_.name = (n_prompt > 0 ? "pp" : "tg") + std::to_string(n) + (depth > 0 ? " @ d" + std::to_string(depth) : "");
        r_.n_prompt = n_prompt;
        r_.n_gen = n_gen;
        r_.n_depth = depth;
        r_.sparse = model.sparse();
    }

    void warm_up() {
        r_.time = iso_time_now();  // when the test starts: with --interleave, long after its TestRun was made
        if (!p_.no_warmup) once(n_prompt_ > 0 ? n() : 1);  // llama-bench's warm-up: the whole prompt, or one token
        r_.sparse_stats = SparseFfnStats();                // count the timed repetitions only
    }

    void repetition() {
        const double ns = once(n());
        r_.ns.push_back(ns);
        r_.ts.push_back(1e9 * n() / ns);
    }

    TestResult finish() {
        if (!p_.timeline_path.empty() && n_gen_ > 0 && n() >= 2) traced();
        return r_;
    }

private:
    int n() const { return n_prompt_ + n_gen_; }
    const int32_t* test_tokens() const { return tokens_.data() + p_.n_depth; }

    void fill(Session& session) const {  // the context before the test, its counters dropped
        if (p_.n_depth == 0) return;
        session.eval(std::vector<int32_t>(tokens_.begin(), tokens_.begin() + p_.n_depth), false);
        session.reset_sparse_stats();
    }

    double once(int count) {  // evaluates the first `count` tokens; returns nanoseconds
        Session session(model_, sp_);  // a fresh context per run, outside the timing
        r_.n_threads = session.n_threads();
        fill(session);
        const int32_t* t = test_tokens();
        const auto t0 = std::chrono::steady_clock::now();
        if (n_prompt_ > 0) {
            session.eval(std::vector<int32_t>(t, t + count), false);
        } else {
            for (int i = 0; i < count; i++) session.eval({t[i]}, false);
        }
        const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
        r_.sparse_stats += session.sparse_stats();
        return ns;
    }

    void traced() {  // one more decode step after 16 tokens, traced
        Session session(model_, sp_);
        fill(session);
        const int32_t* t = test_tokens();
        const int warm = std::min(16, n() - 1);
        for (int i = 0; i < warm; i++) session.eval({t[i]}, false);
        session.set_trace(true);
        session.eval({t[warm]}, false);
        if (session.timeline()) r_.timeline = *session.timeline();
    }

    const Model& model_;
    const BenchParams& p_;
    const int n_prompt_, n_gen_;
    std::vector<int32_t> tokens_;
    SessionParams sp_;
    TestResult r_;
};

std::string fmt(const char* f, double a, double b = 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, a, b);
    return buf;
}

// With --interleave, repetition i of two runs ran back to back: the spread of their ratios pair by pair.
std::string pairwise(const BenchParams& p, const TestResult& r, const TestResult& base) {
    if (!p.interleave || r.ts.empty() || r.ts.size() != base.ts.size()) return "";
    double lo = 0, hi = 0;
    for (size_t i = 0; i < r.ts.size(); i++) {
        const double x = r.ts[i] / base.ts[i];
        lo = i == 0 ? x : std::min(lo, x);
        hi = i == 0 ? x : std::max(hi, x);
    }
    return fmt(" (%.2f-", lo) + fmt("%.2fx repetition by repetition)", hi);
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
    args.add_int({"-d", "--n-depth"}, &p.n_depth,
                 "tokens in the context before each test, evaluated as a prompt and not timed (0 = an empty context)");
    args.add_int({"-r", "--repetitions"}, &p.reps, "repetitions of each test");
    app_add_cache_type_args(args, p.cache_types);
    args.add_int({"-t", "--threads"}, &p.n_threads, "number of threads (0 = physical cores)");
    args.add_int({"--cpu-strict"}, &p.cpu_strict, "1: pin each worker thread to its own physical core (0 = the OS places them)");
    args.add_int({"-b", "--batch-size"}, &p.n_batch, "prompt tokens per evaluation step");
    std::string ngls, budgets;
    args.add_string({"-ngl", "--n-gpu-layers"}, &ngls, "LIST",
                    "comma-separated: layers to offload to the GPU, dense (-1 = automatic placement, 0 = CPU only)");
    args.add_string({"--vram-budget"}, &budgets, "LIST",
                    "comma-separated VRAM budgets in GiB for the placement (-1 = free VRAM minus 512 MiB)");
    args.add_string({"--placement"}, &p.model.placement_path, "FNAME",
                    "load the GPU placement from FNAME when it exists, else plan it and save it there");
    args.add_flag({"--print-placement"}, &p.model.print_placement, "print each run's GPU placement plan");
    args.add_double({"--cpu-bw"}, &p.model.cpu_bandwidth_gbs, "host memory bandwidth the placement assumes, GB/s");
    args.set_default_text("--cpu-bw", "--mem-bw, else measured");
    args.add_string({"--timeline"}, &p.timeline_path, "FNAME",
                    "write one traced decode step of each GPU run (CUDA events and host clock) as JSON");
    std::string profiles;
    args.add_string({"--profile"}, &profiles, "LIST",
                    "comma-separated profiles from ember-profile, each run in turn; 'none' = dense FFN");
    args.add_choice({"-o", "--output"}, &p.output, {"md", "json"}, "output format");
    args.add_float({"--mem-bw"}, &p.mem_bw, "memory bandwidth in GB/s for the bound (0 = measure)");
    args.add_flag({"--no-warmup"}, &p.no_warmup, "skip the warm-up run of each test");
    args.add_flag({"--interleave"}, &p.interleave,
                  "load every configuration (--profile, -ngl, --vram-budget lists) first, then run each test's "
                  "repetitions round-robin across them, so that drift in the machine's speed touches all alike");
    if (!app_parse_args(args, argc, argv)) return 0;  // --help or --version
    if (p.n_prompt < 0) throw Error("-p: invalid value '" + std::to_string(p.n_prompt) + "' (expected >= 0)");
    if (p.n_gen < 0) throw Error("-n: invalid value '" + std::to_string(p.n_gen) + "' (expected >= 0)");
    if (p.n_prompt == 0 && p.n_gen == 0) throw Error("-p and -n are both 0: nothing to measure");
    if (p.n_depth < 0) throw Error("-d: invalid value '" + std::to_string(p.n_depth) + "' (expected >= 0)");
    if (p.reps < 1) throw Error("-r: invalid value '" + std::to_string(p.reps) + "' (expected >= 1)");
    if (p.n_threads < 0) p.n_threads = 0;
    if (p.cpu_strict != 0 && p.cpu_strict != 1)
        throw Error("--cpu-strict: invalid value '" + std::to_string(p.cpu_strict) + "' (expected 0 or 1)");
    if (p.n_batch < 1) throw Error("-b: invalid value '" + std::to_string(p.n_batch) + "' (expected >= 1)");
    // Comma-separated list of flag `name`; empty entries are errors.
    auto split = [](const std::string& name, const std::string& list) {
        std::vector<std::string> items;
        size_t b = 0;
        while (true) {
            const size_t e = list.find(',', b);
            std::string item = list.substr(b, e == std::string::npos ? std::string::npos : e - b);
            if (item.empty()) throw Error(name + ": empty entry in '" + list + "'");
            items.push_back(item);
            if (e == std::string::npos) break;
            b = e + 1;
        }
        return items;
    };
    auto number = [](const std::string& name, const std::string& item, double lo) {
        char* end = nullptr;
        const double v = std::strtod(item.c_str(), &end);
        if (item.empty() || *end != '\0' || !(v >= lo) || (v < 0 && v != -1))
            throw Error(name + ": invalid value '" + item + "' (expected a number >= 0, or -1)");
        return v;
    };
    if (!profiles.empty()) {
        p.profiles.clear();
        for (const std::string& item : split("--profile", profiles)) p.profiles.push_back(item == "none" ? "" : item);
    }
    if (!ngls.empty()) {
        p.ngls.clear();
        for (const std::string& item : split("-ngl", ngls)) {
            const double v = number("-ngl", item, -1);
            if (v != (int)v) throw Error("-ngl: invalid value '" + item + "' (expected an integer)");
            p.ngls.push_back((int)v);
        }
    }
    if (!budgets.empty()) {
        p.budgets.clear();
        for (const std::string& item : split("--vram-budget", budgets)) p.budgets.push_back(number("--vram-budget", item, -1));
    }
    if (!(p.model.cpu_bandwidth_gbs >= 0))
        throw Error("--cpu-bw: invalid value '" + fmt("%g", p.model.cpu_bandwidth_gbs) + "' (expected >= 0)");
    if (p.mem_bw < 0) throw Error("--mem-bw: invalid value '" + fmt("%g", p.mem_bw) + "' (expected >= 0)");

    std::fprintf(stderr, "%s\n", version_string().c_str());
    double mem_bw = p.mem_bw;
    std::string mem_bw_source = "given with --mem-bw";
    const int n_hw = std::max(1u, std::thread::hardware_concurrency());
    auto probe = [&] { return memory_bandwidth_probe(2ull << 30, n_hw, 5); };
    const std::string probe_text = "F32 matvec streaming 2 GiB, " + std::to_string(n_hw) + " threads, best of 5";
    if (mem_bw <= 0) {
        mem_bw = probe();
        mem_bw_source = "measured: " + probe_text;
    }
    std::fprintf(stderr, "memory bandwidth: %.2f GB/s (%s)\n", mem_bw, mem_bw_source.c_str());

    struct Run {
        std::string profile;  // "" = dense
        int ngl = -1;
        double budget = -1;
        ModelInfo info;
        std::string backend;
        uint64_t predictor_bytes = 0;
        Placement placement;
        std::vector<TestResult> results;
    };
    if (p.model.cpu_bandwidth_gbs == 0) p.model.cpu_bandwidth_gbs = mem_bw;  // the planner assumes the same
    std::vector<Run> runs;
    // With --interleave every configuration stays loaded until all its tests are done: its model and its tests.
    std::vector<std::unique_ptr<Model>> loaded;
    std::vector<std::vector<TestRun>> pending;
    const size_t n_runs = p.profiles.size() * p.ngls.size() * p.budgets.size();
    for (const std::string& profile : p.profiles) {
        for (int ngl : p.ngls) {
            for (double budget : p.budgets) {
                ModelParams mp = p.model;
                mp.profile_path = profile;
                mp.n_gpu_layers = ngl;
                mp.vram_budget_gib = budget;
                mp.n_ctx = std::max(p.n_prompt, p.n_gen) + p.n_depth;
                app_apply_cache_types(p.cache_types, mp);
                double load_ms = 0;
                std::unique_ptr<Model> model = app_load_model(mp, &load_ms);
                if (runs.empty()) app_log_model_info(*model, "model");
                std::fprintf(stderr, "run: profile %s, -ngl %d, --vram-budget %g: %s, VRAM %s, loaded in %.0f ms\n",
                             profile.empty() ? "none" : profile.c_str(), ngl, budget, model->backend().c_str(),
                             app_format_size(model->placement().vram_total).c_str(), load_ms);
                Run run;
                run.profile = profile;
                run.ngl = ngl;
                run.budget = budget;
                run.info = model->info();
                run.backend = model->backend();
                run.predictor_bytes = model->predictor_bytes();
                run.placement = model->placement();
                // Loaded together, runs planned against the free VRAM would each see what the others left.
                if (p.interleave && n_runs > 1 && ngl == -1 && budget < 0 &&
                    run.placement.mode != PlacementMode::PLACEMENT_CPU)
                    throw Error("--interleave: the run with profile " + (profile.empty() ? "none" : profile) +
                                " plans its GPU placement against the free VRAM (--vram-budget -1), which the "
                                "other runs loaded with it share: give --vram-budget explicitly");
                std::vector<TestRun> tests;
                if (p.n_prompt > 0) tests.emplace_back(*model, p, p.n_prompt, 0);
                if (p.n_gen > 0) tests.emplace_back(*model, p, 0, p.n_gen);
                if (p.interleave) {
                    pending.push_back(std::move(tests));
                    loaded.push_back(std::move(model));
                } else {
                    for (TestRun& t : tests) {
                        t.warm_up();
                        for (int i = 0; i < p.reps; i++) t.repetition();
                        run.results.push_back(t.finish());
                    }
                }
                runs.push_back(std::move(run));
            }
        }
    }
    // --interleave: per test, every run's warm-up, then repetition i of every run before repetition i + 1 of any.
    // Without --mem-bw the host's bandwidth is probed again before each round, and the bound takes their mean: the
    // machine the rounds ran on, not the one the run started on.
    std::vector<double> round_bw;
    for (size_t t = 0; !pending.empty() && t < pending[0].size(); t++) {
        for (std::vector<TestRun>& tests : pending) tests[t].warm_up();
        for (int i = 0; i < p.reps; i++) {
            if (p.mem_bw <= 0) round_bw.push_back(probe());
            std::fprintf(stderr, "interleave: test %zu, repetition %d of %d, %zu runs\n", t + 1, i + 1, p.reps,
                         pending.size());
            for (std::vector<TestRun>& tests : pending) tests[t].repetition();
        }
        for (size_t r = 0; r < pending.size(); r++) runs[r].results.push_back(pending[r][t].finish());
    }
    if (!round_bw.empty()) {
        mem_bw = stats_mean(round_bw);
        mem_bw_source = fmt("measured: mean of %.0f probes, one before each interleaved round (",
                            (double)round_bw.size()) +
                        fmt("%.2f-", *std::min_element(round_bw.begin(), round_bw.end())) +
                        fmt("%.2f GB/s), ", *std::max_element(round_bw.begin(), round_bw.end())) + probe_text;
        std::fprintf(stderr, "memory bandwidth during the rounds: %.2f GB/s (%s)\n", mem_bw, mem_bw_source.c_str());
    }

    const ModelInfo& info = runs[0].info;
    const std::string desc = app_model_description(info);
    // The decode speeds the bytes each side reads allow (engine/decode-bound.h): with the two sides always reading at
    // the same time, and in the order the layers need them.
    struct Bounds {
        double parallel, layer_order;
    };
    auto bounds_ts = [&](const Run& run, const TestResult& r) {
        const DecodeBytes b = decode_bytes(r, info, run.placement);
        const double gpu_bw = run.placement.gpu_bandwidth;
        return Bounds{decode_bound_parallel_ts(b, mem_bw * 1e9, gpu_bw),
                      decode_bound_layer_order_ts(b, mem_bw * 1e9, gpu_bw)};
    };
    auto vram_label = [](const Run& run) {
        return run.placement.mode == PlacementMode::PLACEMENT_CPU ? std::string("-")
                                                                   : app_format_size(run.placement.vram_total);
    };
    if (!p.timeline_path.empty()) {
        nlohmann::ordered_json tl = nlohmann::ordered_json::array();
        for (const Run& run : runs)
            for (const TestResult& r : run.results) {
                if (r.timeline.spans.empty()) continue;
                nlohmann::ordered_json j;
                j["backend"] = run.backend;
                j["profile"] = run.profile;
                j["n_gpu_layers"] = run.ngl;
                j["vram_budget_gib"] = run.budget;
                j["test"] = r.name;
                j["total_ms"] = r.timeline.total_ms;
                j["gpu_busy_ms"] = r.timeline.gpu_busy_ms;
                j["cpu_busy_ms"] = r.timeline.cpu_busy_ms;
                nlohmann::ordered_json spans = nlohmann::ordered_json::array();
                for (const DecodeTimeline::Span& sp : r.timeline.spans)
                    spans.push_back({{"layer", sp.layer}, {"what", sp.what}, {"side", sp.gpu ? "gpu" : "cpu"},
                                     {"begin_ms", sp.begin_ms}, {"end_ms", sp.end_ms}});
                j["spans"] = spans;
                tl.push_back(j);
            }
        app_write_file("--timeline", p.timeline_path, tl.dump(1) + "\n");
    }
    if (p.output == "json") {
        nlohmann::ordered_json out = nlohmann::ordered_json::array();
        for (const Run& run : runs) {
            for (const TestResult& r : run.results) {
                const double ts = stats_mean(r.ts);
                const double bpt = bytes_per_token(r, info, run.placement);
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
                j["n_gpu_layers"] = run.ngl;
                j["vram_budget_gib"] = run.budget;
                j["placement"] = placement_mode_name(run.placement.mode);
                j["vram_bytes"] = run.placement.vram_total;
                j["n_prompt"] = r.n_prompt;
                j["n_gen"] = r.n_gen;
                j["n_depth"] = r.n_depth;
                j["test"] = r.name;
                j["test_time"] = r.time;
                j["avg_ns"] = (uint64_t)stats_mean(r.ns);
                j["stddev_ns"] = (uint64_t)stats_stddev(r.ns);
                j["avg_ts"] = ts;
                j["stddev_ts"] = stats_stddev(r.ts);
                j["samples_ns"] = r.ns;
                j["samples_ts"] = r.ts;
                j["weight_bytes_per_token"] = bpt;
                j["gpu_weight_bytes_per_token"] = gpu_bytes_per_token(r, run.placement);
                j["mem_bw_gbs"] = mem_bw;
                if (r.sparse) {
                    j["predictor_bytes"] = run.predictor_bytes;
                    j["predicted_active_share"] = r.sparse_stats.predicted_share();
                }
                if (r.n_gen > 0) {
                    j["achieved_gbs"] = bpt * ts / 1e9;
                    const Bounds b = bounds_ts(run, r);
                    j["bw_bound_ts"] = b.parallel;
                    j["bw_layer_order_bound_ts"] = b.layer_order;
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
                            std::to_string(run.ngl), vram_label(run), r.sparse ? "sparse" : "dense",
                            std::to_string(r.n_threads), r.name,
                            fmt("%.2f ± %.2f", stats_mean(r.ts), stats_stddev(r.ts))});
    print_table({"model", "size", "params", "backend", "ngl", "vram", "ffn", "threads", "test", "t/s"},
                {true, false, false, true, false, false, true, false, false, false}, rows);

    std::printf("\nweights read per generated token: %s dense; host memory bandwidth: %.2f GB/s (%s)\n",
                app_format_size(info.weight_bytes_per_token).c_str(), mem_bw, mem_bw_source.c_str());
    std::vector<std::vector<std::string>> bw_rows;
    const TestResult* dense_tg = nullptr;
    const Run* layers_run = nullptr;  // the first dense layer-offload run: the GPU runs' baseline
    const TestResult* layers_tg = nullptr;
    bool any_gpu = false;
    for (const Run& run : runs) {
        const bool gpu = run.placement.mode != PlacementMode::PLACEMENT_CPU;
        any_gpu |= gpu;
        for (const TestResult& r : run.results) {
            if (r.n_gen == 0) continue;
            if (!r.sparse && !gpu && !dense_tg) dense_tg = &r;
            if (!r.sparse && run.placement.mode == PlacementMode::PLACEMENT_LAYERS && !layers_tg)
                layers_run = &run, layers_tg = &r;
            const double ts = stats_mean(r.ts);
            const double bpt = bytes_per_token(r, info, run.placement);
            const double gbpt = gpu_bytes_per_token(r, run.placement);
            const double achieved = bpt * ts / 1e9;
            const Bounds b = bounds_ts(run, r);
            const double bound = b.parallel, in_order = b.layer_order;
            bw_rows.push_back({run.backend, r.sparse ? "sparse" : "dense", r.name, fmt("%.2f", ts),
                               app_format_size((uint64_t)bpt), gpu ? app_format_size((uint64_t)gbpt) : "-",
                               r.sparse ? fmt("%.1f %%", 100.0 * r.sparse_stats.predicted_share()) : "100 %",
                               fmt("%.2f", achieved), fmt("%.1f %%", 100.0 * achieved / mem_bw), fmt("%.2f", bound),
                               fmt("%.0f %%", bound > 0 ? 100.0 * ts / bound : 0.0), fmt("%.2f", in_order),
                               fmt("%.0f %%", in_order > 0 ? 100.0 * ts / in_order : 0.0)});
        }
    }
    if (!bw_rows.empty()) {
        std::printf("\n");
        print_table({"backend", "ffn", "test", "t/s", "host bytes/token", "VRAM bytes/token", "neurons run",
                     "host GB/s", "of host bandwidth", "t/s bytes allow", "of bound", "in layer order", "of it"},
                    {true, true, false, false, false, false, false, false, false, false, false, false, false},
                    bw_rows);
    }
    // Sparse against dense on the CPU: the speed-up can at best match the ratio of bytes read per token.
    if (dense_tg) {
        for (const Run& run : runs) {
            if (run.placement.mode != PlacementMode::PLACEMENT_CPU) continue;
            for (const TestResult& r : run.results) {
                if (!r.sparse || r.n_gen == 0) continue;
                const double speedup = stats_mean(r.ts) / stats_mean(dense_tg->ts);
                const double bytes_ratio = bytes_per_token(*dense_tg, info, runs[0].placement) /
                                           bytes_per_token(r, info, run.placement);
                std::printf("\nsparse %s vs dense: speed-up %.2fx%s, bytes ratio %.2fx: %.0f %% of the bytes bound "
                            "(profile %s, predictors %s)\n",
                            r.name.c_str(), speedup, pairwise(p, r, *dense_tg).c_str(), bytes_ratio,
                            100.0 * speedup / bytes_ratio, run.profile.c_str(),
                            app_format_size(run.predictor_bytes).c_str());
            }
        }
    }
    // GPU runs against dense layer offload.
    if (layers_tg) {
        for (const Run& run : runs) {
            if (&run == layers_run || run.placement.mode == PlacementMode::PLACEMENT_CPU) continue;
            for (const TestResult& r : run.results) {
                if (r.n_gen == 0) continue;
                std::printf("\n%s (%s FFN, VRAM %s) vs %s -ngl %d (dense, VRAM %s), %s: speed-up %.2fx%s\n",
                            run.backend.c_str(), r.sparse ? "sparse" : "dense", vram_label(run).c_str(),
                            layers_run->backend.c_str(), layers_run->ngl, vram_label(*layers_run).c_str(),
                            r.name.c_str(), stats_mean(r.ts) / stats_mean(layers_tg->ts),
                            pairwise(p, r, *layers_tg).c_str());
            }
        }
    }
    if (any_gpu) {
        for (const Run& run : runs)
            for (const TestResult& r : run.results) {
                const DecodeTimeline& t = r.timeline;
                if (t.spans.empty() || t.total_ms <= 0) continue;
                std::printf("\ntimeline of one decode step, %s (%s FFN): %.2f ms; GPU busy %.0f %%, CPU busy %.0f %% "
                            "(written to %s)\n",
                            run.backend.c_str(), r.sparse ? "sparse" : "dense", t.total_ms,
                            100.0 * t.gpu_busy_ms / t.total_ms, 100.0 * t.cpu_busy_ms / t.total_ms,
                            p.timeline_path.c_str());
            }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return app_run([&] { return run(argc, argv); });
}
