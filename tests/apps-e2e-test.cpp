// End-to-end runs of the built ember-cli, ember-perplexity and ember-bench on the real stories260K model:
// greedy output against llama.cpp's reference text, error exits, perplexity and bench output.
#include <gtest/gtest.h>

#include <cstdlib>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <regex>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/run-process.h"

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";
const std::string kReference = std::string(EMBER_SHARED_DIR) + "/testdata/reference/stories260K.llama-cpp.json";

using ember_test::RunResult;
using ember_test::run_process;  // (binary, args, stdin text)
using ember_test::slurp;

std::string temp_path(const std::string& name) { return ember_test::temp_path("apps-e2e", name); }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A TinyStories-like text, written for this test.
const char* kStory =
    "Once upon a time, there was a little girl named Mia. Mia loved to play in the garden with her dog, Max. "
    "One sunny day, Mia and Max found a big red ball under a tree. Mia said, \"Look, Max! A ball!\" Max wagged his "
    "tail and barked. They played with the ball all day. They ran and jumped and laughed.\n"
    "Then the sky became dark. Big clouds came and it started to rain. Mia was sad because she wanted to play more. "
    "Her mom called, \"Mia, come inside! It is raining.\" Mia took the ball and ran home with Max.\n"
    "Inside the house, Mom gave Mia a warm cup of milk. Mia sat by the window and watched the rain. Max slept on "
    "the rug. Mia said, \"Mom, can we play again tomorrow?\" Mom smiled and said, \"Yes, when the sun comes back.\"\n"
    "The next day, the sun was bright and warm. Mia and Max went back to the garden. They saw a small bird in the "
    "grass. The bird could not fly because its wing was hurt. Mia was kind. She put the bird in a little box with "
    "soft leaves. She gave it some water and some seeds.\n"
    "Every day, Mia took care of the bird. She talked to it and sang songs. After many days, the bird was happy "
    "and strong. One morning, it flew up into the sky. Mia waved and said, \"Goodbye, little bird!\" The bird "
    "sang a happy song. Mia felt proud. She learned that being kind is a good thing to do. From that day on, "
    "Mia and Max helped every animal they found, and they were the best friends in the whole town.\n"
    "One day, Tom the boy from next door came to play. Tom had a blue kite. He said, \"Mia, do you want to fly "
    "my kite with me?\" Mia said, \"Yes, please!\" They ran to the hill. The wind was strong and the kite went up, "
    "up, up. Max barked at the kite. Tom and Mia laughed and laughed. They shared the kite and took turns. At the "
    "end of the day, they were tired but happy. They went home and had a big dinner. Mia told her mom about the "
    "kite, and Mom said, \"It is good to share with your friends.\" Mia smiled and went to sleep.\n";

}  // namespace

TEST(AppsCli, GreedyMatchesLlamaCppReference) {
    const nlohmann::json ref = nlohmann::json::parse(slurp(kReference));
    ASSERT_GE(ref["cases"].size(), 1u);
    for (const auto& c : ref["cases"]) {
        const std::string prompt = c["prompt"];
        const std::string expected = prompt + c["greedy_text"].get<std::string>();
        const RunResult r = run_process(EMBER_CLI_BIN, {"-m", kModel, "-p", prompt, "-n", "64", "--temp", "0", "-ctk",
                                                        "f32", "-ctv", "f32"});
        ASSERT_EQ(r.rc, 0) << r.err;
        EXPECT_EQ(r.out, expected) << "prompt: " << prompt;
    }
}

// The KV cache is F16 unless -ctk / -ctv say otherwise (llama.cpp's default), and keeps the greedy text of the F32
// cache (llama.cpp's reference); other types are refused naming the flag.
TEST(AppsCli, KvCacheIsF16ByDefaultAndKeepsTheGreedyText) {
    const nlohmann::json ref = nlohmann::json::parse(slurp(kReference));
    const auto& c = ref["cases"][0];
    const std::string prompt = c["prompt"];
    const RunResult r = run_process(EMBER_CLI_BIN, {"-m", kModel, "-p", prompt, "-n", "32", "--temp", "0"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "kv cache = f16 / f16")) << r.err;
    const RunResult r32 = run_process(EMBER_CLI_BIN, {"-m", kModel, "-p", prompt, "-n", "32", "--temp", "0", "-ctk",
                                                      "f32", "-ctv", "f32"});
    ASSERT_EQ(r32.rc, 0) << r32.err;
    EXPECT_TRUE(contains(r32.err, "kv cache = f32 / f32")) << r32.err;
    EXPECT_EQ(r.out, r32.out);
    EXPECT_EQ(r.out.rfind(prompt, 0), 0u) << r.out;
    const RunResult mixed = run_process(EMBER_CLI_BIN, {"-m", kModel, "-p", prompt, "-n", "4", "-ctv", "f32"});
    ASSERT_EQ(mixed.rc, 0) << mixed.err;
    EXPECT_TRUE(contains(mixed.err, "kv cache = f16 / f32")) << mixed.err;
    const RunResult bad = run_process(EMBER_CLI_BIN, {"-m", kModel, "-p", "Hi", "-ctv", "q4_0"});
    EXPECT_EQ(bad.rc, 1);
    EXPECT_TRUE(contains(bad.err, "-ctv: invalid value 'q4_0'")) << bad.err;
}

TEST(AppsCli, LogsModelInfoAndTimingsToStderr) {
    const RunResult r =
        run_process(EMBER_CLI_BIN, {"-m", kModel, "-p", "Once upon a time", "-n", "8", "--temp", "0"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "arch")) << r.err;
    EXPECT_TRUE(contains(r.err, "llama")) << r.err;
    EXPECT_TRUE(std::regex_search(r.err, std::regex(R"(prompt eval time = +[0-9.]+ ms / +5 tokens \()"))) << r.err;
    EXPECT_TRUE(std::regex_search(r.err, std::regex(R"( eval time = +[0-9.]+ ms / +7 runs)"))) << r.err;
    EXPECT_TRUE(contains(r.err, "tokens per second")) << r.err;
    EXPECT_FALSE(contains(r.out, "time =")) << "logs must not go to stdout";
}

TEST(AppsCli, NoDisplayPromptAndSeededSampling) {
    const std::vector<std::string> base = {"-m", kModel, "-p", "Once upon a time", "-n", "24", "--no-display-prompt"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = base;
        a.insert(a.end(), extra.begin(), extra.end());
        return run_process(EMBER_CLI_BIN, a);
    };
    const RunResult a = with({"-s", "42"}), b = with({"-s", "42"}), c = with({"-s", "7", "--temp", "1.5"});
    ASSERT_EQ(a.rc, 0) << a.err;
    EXPECT_FALSE(contains(a.out, "Once upon a time"));
    EXPECT_FALSE(a.out.empty());
    EXPECT_EQ(a.out, b.out);
    EXPECT_NE(a.out, c.out);
}

TEST(AppsCli, BadFlagsExitOneNamingTheFlag) {
    const std::vector<std::vector<std::string>> cases = {
        {"--frobnicate"}, {"--temp", "warm"}, {"-n", "ten"}, {"-c", "-5"}, {"--top-k", "1.5"},
        {"--chat-template", "nosuch"}, {"-m"}, {"-ngl", "-3"}, {"--vram-budget", "-2"}, {"--cpu-bw", "-1"},
    };
    for (const auto& bad : cases) {
        std::vector<std::string> args = {"-m", kModel, "-p", "hi"};
        args.insert(args.end(), bad.begin(), bad.end());
        const RunResult r = run_process(EMBER_CLI_BIN, args);
        EXPECT_EQ(r.rc, 1) << bad[0];
        EXPECT_TRUE(contains(r.err, bad[0])) << r.err;
        if (bad.size() > 1) {
            EXPECT_TRUE(contains(r.err, "'" + bad[1] + "'")) << r.err;
        }
        EXPECT_TRUE(r.out.empty()) << r.out;
    }
}

// Without a CUDA device (or in a build without CUDA) the placement is CPU-only and says so; -ngl N > 0 warns and
// gives the CPU's text.
TEST(AppsCli, PlacementWithoutGpuIsCpu) {
    const char* cuda = std::getenv("CUDA_VISIBLE_DEVICES");
    if (!cuda || std::string(cuda) != "") {
        // Hide any device, so the test means the same on every machine.
        setenv("CUDA_VISIBLE_DEVICES", "", 1);
    }
    const RunResult plain = run_process(EMBER_CLI_BIN, {"-m", kModel, "-p", "Once upon a time", "-n", "16", "--temp", "0"});
    const RunResult shown = run_process(EMBER_CLI_BIN, {"-m", kModel, "-p", "Once upon a time", "-n", "16", "--temp", "0",
                                                        "--print-placement", "-ngl", "5"});
    ASSERT_EQ(plain.rc, 0) << plain.err;
    ASSERT_EQ(shown.rc, 0) << shown.err;
    EXPECT_TRUE(contains(shown.err, "placement: cpu")) << shown.err;
    EXPECT_TRUE(contains(shown.err, "-ngl 5: no CUDA device")) << shown.err;
    EXPECT_EQ(plain.out, shown.out);
}

TEST(AppsCli, MissingModelNamesThePath) {
    const std::string path = "/nonexistent/dir/model-xyz.gguf";
    const RunResult r = run_process(EMBER_CLI_BIN, {"-m", path, "-p", "hi"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(contains(r.err, path)) << r.err;
    const RunResult none = run_process(EMBER_CLI_BIN, {"-p", "hi"});
    EXPECT_EQ(none.rc, 1);
    EXPECT_TRUE(contains(none.err, "-m")) << none.err;
}

TEST(AppsCli, NoPromptIsAnError) {
    const RunResult r = run_process(EMBER_CLI_BIN, {"-m", kModel});
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(contains(r.err, "-p")) << r.err;
}

TEST(AppsCli, HelpAndVersion) {
    const RunResult h = run_process(EMBER_CLI_BIN, {"--help"});
    EXPECT_EQ(h.rc, 0);
    for (const char* flag : {"--n-predict", "--ctx-size", "--repeat-penalty", "-cnv", "--chat-template", "chatml"})
        EXPECT_TRUE(contains(h.out, flag)) << flag;
    const RunResult v = run_process(EMBER_CLI_BIN, {"--version"});
    EXPECT_EQ(v.rc, 0);
    EXPECT_TRUE(contains(v.out, "ember")) << v.out;
}

// Every app answers --version and --help, and exits 0 without needing a model.
TEST(AppsCli, EveryModelAppPrintsVersionAndHelp) {
    for (const char* bin : {EMBER_CLI_BIN, EMBER_PERPLEXITY_BIN, EMBER_BENCH_BIN, EMBER_SYNTH_BIN, EMBER_SPARSITY_BIN,
                            EMBER_PROFILE_BIN, EMBER_TOKENIZE_BIN, EMBER_QUANTIZE_BIN}) {
        const RunResult v = run_process(bin, {"--version"});
        EXPECT_EQ(v.rc, 0) << bin << ": " << v.err;
        EXPECT_TRUE(contains(v.out, "ember 0.1.0 (cpu: ")) << bin << ": " << v.out;
        const RunResult h = run_process(bin, {"--help"});
        EXPECT_EQ(h.rc, 0) << bin << ": " << h.err;
        EXPECT_TRUE(contains(h.out, "--version")) << bin << ": " << h.out;
    }
}

// EMBER_PREFETCH picks the cache level the CPU kernels prefetch into; --version says which; a wrong value is named
// on stderr and the CPU's default stays.
TEST(AppsCli, PrefetchLevelFromTheEnvironment) {
    const RunResult l1 = run_process(EMBER_CLI_BIN, {"--version"}, "", "EMBER_PREFETCH=l1 ");
    EXPECT_EQ(l1.rc, 0);
    EXPECT_TRUE(contains(l1.out, "prefetch to L1")) << l1.out;
    const RunResult l2 = run_process(EMBER_CLI_BIN, {"--version"}, "", "EMBER_PREFETCH=l2 ");
    EXPECT_EQ(l2.rc, 0);
    EXPECT_TRUE(contains(l2.out, "prefetch to L2")) << l2.out;
    const RunResult bad = run_process(EMBER_CLI_BIN, {"--version"}, "", "EMBER_PREFETCH=l3 ");
    EXPECT_EQ(bad.rc, 0);
    EXPECT_TRUE(contains(bad.err, "EMBER_PREFETCH='l3' is not l1 or l2")) << bad.err;
    EXPECT_TRUE(contains(bad.out, "prefetch to L")) << bad.out;
}

TEST(AppsCli, ContextFullStops) {
    const RunResult r = run_process(EMBER_CLI_BIN, {"-m", kModel, "-p", "Once upon a time", "-c", "16",
                                                    "--ignore-eos", "--temp", "0"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "context full")) << r.err;
    // 5 prompt tokens, then 11 evaluated + 1 printed: 12 generated tokens.
    EXPECT_TRUE(std::regex_search(r.err, std::regex(R"( eval time = +[0-9.]+ ms / +11 runs)"))) << r.err;
}

TEST(AppsCli, PromptLongerThanTheContextIsAnError) {
    const RunResult r = run_process(EMBER_CLI_BIN, {"-m", kModel, "-p", kStory, "-c", "32"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(contains(r.err, "prompt is too long")) << r.err;
    EXPECT_TRUE(contains(r.err, "max 28")) << r.err;
}

TEST(AppsCli, ConversationReadsTurnsUntilEof) {
    const RunResult r = run_process(EMBER_CLI_BIN, {"-m", kModel, "-cnv", "-n", "12", "--temp", "0", "-sys",
                                                    "Be nice."},
                                    "Tell me a story.\nWhat happened next?\n");
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "plain")) << r.err;  // stories260K has no chat template: the fallback is logged
    EXPECT_GE(std::count(r.out.begin(), r.out.end(), '>'), 3) << r.out;  // three input markers: 2 turns, then EOF
    // Turn 2 re-evaluates only the new tokens: prompt tokens < both turns' full prompts.
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.err, m, std::regex(R"(prompt eval time = +[0-9.]+ ms / +([0-9]+) tokens)"))) << r.err;
    EXPECT_GT(std::stoi(m[1]), 0);
    // The second turn reuses the whole first turn (prompt and reply) from the KV cache.
    std::smatch t1, t2;
    const std::regex turn(R"(\[chat: ([0-9]+) prompt tokens, ([0-9]+) reused)");
    auto it = std::sregex_iterator(r.err.begin(), r.err.end(), turn);
    ASSERT_NE(it, std::sregex_iterator());
    const int first_prompt = std::stoi((*it)[1]);
    ASSERT_NE(++it, std::sregex_iterator()) << r.err;
    EXPECT_GE(std::stoi((*it)[2]), first_prompt + 1) << r.err;  // at least the first prompt and one reply token
}

TEST(AppsCli, ConversationWithNamedTemplate) {
    const RunResult r = run_process(EMBER_CLI_BIN, {"-m", kModel, "-cnv", "-n", "4", "--temp", "0",
                                                    "--chat-template", "chatml"},
                                    "Hi\n");
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "'chatml'")) << r.err;
}

TEST(AppsPerplexity, FinalEstimateIsFinite) {
    const std::string text = temp_path("story.txt");
    std::ofstream(text) << kStory << kStory;
    const RunResult r = run_process(EMBER_PERPLEXITY_BIN, {"-m", kModel, "-f", text, "-c", "128"});
    std::remove(text.c_str());
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "[1]")) << r.out;
    EXPECT_TRUE(contains(r.out, "[2]")) << r.out;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+))"))) << r.out;
    const double ppl = std::stod(m[1]), err = std::stod(m[2]);
    EXPECT_TRUE(std::isfinite(ppl));
    EXPECT_GT(ppl, 1.0);
    EXPECT_LT(ppl, 100.0);  // a model trained on TinyStories does far better than its 512-token vocabulary
    EXPECT_GT(err, 0.0);
    EXPECT_LT(err, ppl);
}

TEST(AppsPerplexity, ShortTextSaysHowManyTokensAreNeeded) {
    const std::string text = temp_path("short.txt");
    std::ofstream(text) << "Once upon a time, there was a cat.";
    const RunResult r = run_process(EMBER_PERPLEXITY_BIN, {"-m", kModel, "-f", text, "-c", "128"});
    std::remove(text.c_str());
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(contains(r.err, "at least 256 tokens")) << r.err;
    const RunResult missing = run_process(EMBER_PERPLEXITY_BIN, {"-m", kModel, "-f", "/nonexistent/text.txt"});
    EXPECT_EQ(missing.rc, 1);
    EXPECT_TRUE(contains(missing.err, "/nonexistent/text.txt")) << missing.err;
}

TEST(AppsBench, MarkdownRows) {
    const RunResult r =
        run_process(EMBER_BENCH_BIN, {"-m", kModel, "-p", "16", "-n", "8", "-r", "2", "--mem-bw", "10"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "| model")) << r.out;
    EXPECT_TRUE(contains(r.out, "t/s |")) << r.out;
    EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\|\s+pp16 \|\s+[0-9.]+ ± [0-9.]+ \|)"))) << r.out;
    EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\|\s+tg8 \|\s+[0-9.]+ ± [0-9.]+ \|)"))) << r.out;
    EXPECT_TRUE(contains(r.out, "weights read per generated token")) << r.out;
    EXPECT_TRUE(contains(r.out, "10.00 GB/s")) << r.out;
    EXPECT_TRUE(contains(r.out, "| in layer order |")) << r.out;
}

TEST(AppsBench, JsonParsesAndMeasuresBandwidth) {
    const RunResult r = run_process(EMBER_BENCH_BIN, {"-m", kModel, "-p", "16", "-n", "8", "-r", "2", "-o", "json"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "memory bandwidth:")) << r.err;  // measured, since --mem-bw was not given
    const nlohmann::json j = nlohmann::json::parse(r.out);
    ASSERT_TRUE(j.is_array());
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0]["test"], "pp16");
    EXPECT_EQ(j[1]["test"], "tg8");
    for (const auto& t : j) {
        EXPECT_GT(t["avg_ts"].get<double>(), 0.0);
        EXPECT_EQ(t["samples_ts"].size(), 2u);
        EXPECT_GT(t["mem_bw_gbs"].get<double>(), 0.0);
    }
    EXPECT_GT(j[1]["achieved_gbs"].get<double>(), 0.0);
    EXPECT_GT(j[1]["bw_bound_ts"].get<double>(), 0.0);
    // On the CPU alone every part reads host memory in turn: the bound in layer order is the same one.
    EXPECT_NEAR(j[1]["bw_layer_order_bound_ts"].get<double>(), j[1]["bw_bound_ts"].get<double>(),
                1e-9 * j[1]["bw_bound_ts"].get<double>());
}

// -d N: each test runs after N tokens of context (llama-bench's "@ dN" tests), in markdown and JSON.
TEST(AppsBench, DepthRunsEachTestAfterAContext) {
    const RunResult md = run_process(EMBER_BENCH_BIN,
                                     {"-m", kModel, "-p", "8", "-n", "4", "-d", "64", "-r", "2", "--mem-bw", "10"});
    ASSERT_EQ(md.rc, 0) << md.err;
    EXPECT_TRUE(std::regex_search(md.out, std::regex(R"(\|\s+pp8 @ d64 \|\s+[0-9.]+ ± [0-9.]+ \|)"))) << md.out;
    EXPECT_TRUE(std::regex_search(md.out, std::regex(R"(\|\s+tg4 @ d64 \|\s+[0-9.]+ ± [0-9.]+ \|)"))) << md.out;
    const RunResult r = run_process(EMBER_BENCH_BIN,
                                    {"-m", kModel, "-p", "0", "-n", "4", "-d", "300", "-r", "2", "-o", "json", "--mem-bw", "10"});
    ASSERT_EQ(r.rc, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0]["test"], "tg4 @ d300");
    EXPECT_EQ(j[0]["n_depth"], 300);
    EXPECT_EQ(j[0]["n_gen"], 4);
    EXPECT_GT(j[0]["avg_ts"].get<double>(), 0.0);
    const RunResult f16 = run_process(EMBER_BENCH_BIN, {"-m", kModel, "-p", "0", "-n", "4", "-d", "64", "-r", "1",
                                                        "-ctk", "f16", "-ctv", "f16", "--mem-bw", "10"});
    ASSERT_EQ(f16.rc, 0) << f16.err;
    EXPECT_TRUE(contains(f16.out, "tg4 @ d64")) << f16.out;
    const RunResult bad = run_process(EMBER_BENCH_BIN, {"-m", kModel, "-n", "4", "-d", "-3"});
    EXPECT_EQ(bad.rc, 1);
    EXPECT_TRUE(contains(bad.err, "-d: invalid value '-3'")) << bad.err;
}

// --interleave: every configuration is loaded before any test runs, then each test's repetitions alternate between
// them (repetition i of each before repetition i + 1 of any); the results are those of the plain order's layout.
TEST(AppsBench, InterleaveLoadsEveryRunFirstThenAlternatesRepetitions) {
    const std::string model = std::string(EMBER_SOURCE_DIR) + "/models/tiny-relu-q8_0.gguf";
    const std::string profile = std::string(EMBER_SOURCE_DIR) + "/models/tiny-relu-q8_0.profile.gguf";
    const RunResult r = run_process(EMBER_BENCH_BIN, {"-m", model, "--profile", "none," + profile, "-p", "8", "-n", "4",
                                                      "-r", "3", "--interleave", "-o", "json", "--mem-bw", "10"});
    ASSERT_EQ(r.rc, 0) << r.err;
    const size_t load_dense = r.err.find("run: profile none,"), load_sparse = r.err.find("run: profile " + profile);
    const size_t first_rep = r.err.find("interleave: test 1, repetition 1 of 3, 2 runs");
    ASSERT_NE(load_dense, std::string::npos) << r.err;
    ASSERT_NE(load_sparse, std::string::npos) << r.err;
    ASSERT_NE(first_rep, std::string::npos) << r.err;
    EXPECT_LT(load_dense, first_rep) << r.err;
    EXPECT_LT(load_sparse, first_rep) << r.err;
    // pp then tg, three rounds each, in order.
    size_t at = first_rep;
    for (int t = 1; t <= 2; t++)
        for (int i = 1; i <= 3; i++) {
            const std::string line =
                "interleave: test " + std::to_string(t) + ", repetition " + std::to_string(i) + " of 3, 2 runs";
            const size_t found = r.err.find(line, at);
            ASSERT_NE(found, std::string::npos) << line << "\n" << r.err;
            at = found;
        }
    const nlohmann::json j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 4u);
    const char* tests[] = {"pp8", "tg4", "pp8", "tg4"};
    for (size_t i = 0; i < 4; i++) {
        EXPECT_EQ(j[i]["test"], tests[i]);
        EXPECT_EQ(j[i]["ffn"], i < 2 ? "dense" : "sparse");
        EXPECT_EQ(j[i]["samples_ts"].size(), 3u);
        EXPECT_GT(j[i]["avg_ts"].get<double>(), 0.0);
    }
    EXPECT_GT(j[3]["predicted_active_share"].get<double>(), 0.0);
    // The summary gives the speed-up's spread over the pairs of repetitions that ran back to back.
    const RunResult md = run_process(EMBER_BENCH_BIN, {"-m", model, "--profile", "none," + profile, "-p", "0", "-n",
                                                       "4", "-r", "2", "--interleave", "--mem-bw", "10"});
    ASSERT_EQ(md.rc, 0) << md.err;
    EXPECT_TRUE(std::regex_search(
        md.out, std::regex(R"(sparse tg4 vs dense: speed-up [0-9.]+x \([0-9.]+-[0-9.]+x repetition by repetition\))")))
        << md.out;
    // Without --mem-bw the bound takes the mean of a probe before each round, which stderr and the JSON report.
    const RunResult probed = run_process(EMBER_BENCH_BIN, {"-m", model, "--profile", "none," + profile, "-p", "0",
                                                           "-n", "2", "-r", "2", "--interleave", "-o", "json"});
    ASSERT_EQ(probed.rc, 0) << probed.err;
    std::smatch m;
    const std::regex round_line(R"(memory bandwidth during the rounds: ([0-9.]+) GB/s \(measured: mean of 2 probes)");
    ASSERT_TRUE(std::regex_search(probed.err, m, round_line)) << probed.err;
    const double round_bw = std::stod(m[1].str());
    EXPECT_GT(round_bw, 0.0);
    for (const auto& t : nlohmann::json::parse(probed.out)) EXPECT_NEAR(t["mem_bw_gbs"].get<double>(), round_bw, 0.01);
    // Without the flag: no interleaving, no pairs.
    const RunResult plain = run_process(EMBER_BENCH_BIN, {"-m", model, "--profile", "none," + profile, "-p", "0",
                                                          "-n", "4", "-r", "2", "--mem-bw", "10"});
    ASSERT_EQ(plain.rc, 0) << plain.err;
    EXPECT_FALSE(contains(plain.err, "interleave:")) << plain.err;
    EXPECT_TRUE(contains(plain.out, "sparse tg4 vs dense: speed-up")) << plain.out;
    EXPECT_FALSE(contains(plain.out, "repetition by repetition")) << plain.out;
}

TEST(AppsBench, BadFlag) {
    const RunResult r = run_process(EMBER_BENCH_BIN, {"-m", kModel, "-o", "xml"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(contains(r.err, "-o: invalid value 'xml'")) << r.err;
}
