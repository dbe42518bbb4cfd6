// The apps' argument parser (apps/app-args.h): values, switches, errors naming the flag and value, escapes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "apps/app-args.h"

using namespace ember;

namespace {

struct Opts {
    int n = -1;
    int64_t seed = -1;
    float temp = 0.8f;
    std::string model;
    std::string format = "md";
    bool flag = false;
};

ArgParser make_parser(Opts& o) {
    ArgParser a("prog", "test program");
    a.add_int({"-n", "--n-predict"}, &o.n, "count");
    a.add_i64({"-s", "--seed"}, &o.seed, "seed");
    a.add_float({"--temp"}, &o.temp, "temperature");
    a.add_string({"-m", "--model"}, &o.model, "FNAME", "model");
    a.add_choice({"-o"}, &o.format, {"md", "json"}, "format");
    a.add_flag({"--ignore-eos"}, &o.flag, "switch");
    return a;
}

// Parses the words; returns the error message, "" on success.
std::string parse(Opts& o, std::vector<std::string> words) {
    ArgParser a = make_parser(o);
    std::vector<char*> argv = {(char*)"prog"};
    for (std::string& w : words) argv.push_back(w.data());
    try {
        a.parse((int)argv.size(), argv.data());
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(AppArgs, ParsesEveryKind) {
    Opts o;
    EXPECT_EQ(parse(o, {"-n", "64", "--seed", "12345678901", "--temp", "0", "-m", "a b.gguf", "-o", "json",
                        "--ignore-eos"}),
              "");
    EXPECT_EQ(o.n, 64);
    EXPECT_EQ(o.seed, 12345678901LL);
    EXPECT_EQ(o.temp, 0.0f);
    EXPECT_EQ(o.model, "a b.gguf");
    EXPECT_EQ(o.format, "json");
    EXPECT_TRUE(o.flag);
}

TEST(AppArgs, NegativeValuesAndDefaults) {
    Opts o;
    EXPECT_EQ(parse(o, {"--n-predict", "-2", "--temp", "-1.5"}), "");
    EXPECT_EQ(o.n, -2);
    EXPECT_EQ(o.temp, -1.5f);
    EXPECT_EQ(o.format, "md");
    EXPECT_FALSE(o.flag);
}

TEST(AppArgs, ErrorsNameTheFlagAndValue) {
    Opts o;
    std::string m = parse(o, {"--frobnicate"});
    EXPECT_NE(m.find("'--frobnicate'"), std::string::npos) << m;
    m = parse(o, {"-n", "12x"});
    EXPECT_NE(m.find("-n"), std::string::npos) << m;
    EXPECT_NE(m.find("'12x'"), std::string::npos) << m;
    m = parse(o, {"--temp", "hot"});
    EXPECT_NE(m.find("--temp: invalid value 'hot'"), std::string::npos) << m;
    m = parse(o, {"--temp", "inf"});
    EXPECT_NE(m.find("'inf'"), std::string::npos) << m;
    m = parse(o, {"-n", "99999999999"});
    EXPECT_NE(m.find("out of range"), std::string::npos) << m;
    m = parse(o, {"-o", "xml"});
    EXPECT_NE(m.find("-o: invalid value 'xml' (expected one of md|json)"), std::string::npos) << m;
    m = parse(o, {"-m"});
    EXPECT_NE(m.find("-m: missing value"), std::string::npos) << m;
    m = parse(o, {"-n", ""});
    EXPECT_NE(m.find("-n: invalid value ''"), std::string::npos) << m;
}

TEST(AppArgs, SeenAndUsage) {
    Opts o;
    ArgParser a = make_parser(o);
    char* argv[] = {(char*)"prog", (char*)"--model", (char*)"x"};
    a.parse(3, argv);
    EXPECT_TRUE(a.seen("-m"));
    EXPECT_TRUE(a.seen("--model"));
    EXPECT_FALSE(a.seen("-n"));
    const std::string u = a.usage();
    EXPECT_NE(u.find("-n, --n-predict N"), std::string::npos) << u;
    EXPECT_NE(u.find("(default: -1)"), std::string::npos) << u;
    EXPECT_NE(u.find("-o md|json"), std::string::npos) << u;
}

// A default worked out at run time replaces the sentinel in --help: one "(default: ...)" per option, the given text.
TEST(AppArgs, DefaultTextReplacesTheSentinel) {
    Opts o;
    double budget = -1.0;
    ArgParser a = make_parser(o);
    a.add_double({"--vram-budget"}, &budget, "GiB of VRAM");
    a.set_default_text("--vram-budget", "free VRAM minus 512 MiB");
    a.set_default_text("--temp", "as the model says");  // by its only name
    const std::string u = a.usage();
    const size_t line = u.find("--vram-budget");
    ASSERT_NE(line, std::string::npos) << u;
    const std::string rest = u.substr(line, u.find('\n', line) - line);
    EXPECT_NE(rest.find("(default: free VRAM minus 512 MiB)"), std::string::npos) << rest;
    EXPECT_EQ(rest.find("(default: -1)"), std::string::npos) << rest;
    EXPECT_EQ(rest.find("(default:"), rest.rfind("(default:")) << "one default per option: " << rest;
    EXPECT_NE(u.find("temperature (default: as the model says)"), std::string::npos) << u;
    EXPECT_NE(u.find("count (default: -1)"), std::string::npos) << "other options keep theirs: " << u;
}

TEST(AppArgs, Unescape) {
    EXPECT_EQ(args_unescape("a\\nb\\tc\\\\d\\\"e\\'f"), "a\nb\tc\\d\"e'f");
    EXPECT_EQ(args_unescape("\\x41\\x4a!"), "AJ!");
    EXPECT_EQ(args_unescape("keep \\q and trailing \\"), "keep \\q and trailing \\");
    EXPECT_EQ(args_unescape("\\xZZ"), "\\xZZ");
}

TEST(AppArgs, AppRunTurnsErrorsIntoExitOne) {
    testing::internal::CaptureStderr();
    const int rc = app_run([]() -> int { throw Error("-x: invalid value 'y'"); });
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(rc, 1);
    EXPECT_EQ(err, "error: -x: invalid value 'y'\n");
    EXPECT_EQ(app_run([] { return 0; }), 0);
}
