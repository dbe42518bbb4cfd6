// End-to-end runs of the built ember-quantize on stories260K: output, exit codes and error messages.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "engine/gguf.h"
#include "tests/run-process.h"

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";

using ember_test::RunResult;
using ember_test::slurp;

std::string temp_path(const std::string& name) { return ember_test::temp_path("quantize-e2e", name); }

bool exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

// Runs ember-quantize with args after `prefix` (shell commands, e.g. a ulimit).
RunResult run(const std::vector<std::string>& args, const std::string& prefix = "") {
    return ember_test::run_process(EMBER_QUANTIZE_BIN, args, "", prefix);
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(QuantizeE2E, QuantizesWithPerTensorLinesAndSummary) {
    const std::string out = temp_path("q8.gguf");
    const RunResult r = run({kModel, out, "q8_0", "-t", "2"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(has(r.err, "[   1/  48]")) << r.err;
    EXPECT_TRUE(has(r.err, "[  48/  48]")) << r.err;
    EXPECT_TRUE(has(r.err, "converting to q8_0")) << r.err;
    EXPECT_TRUE(has(r.err, "model size")) << r.err;
    EXPECT_TRUE(has(r.err, "quant size")) << r.err;
    EXPECT_TRUE(has(r.err, "5 of 48 tensor(s) required fallback")) << r.err;
    EXPECT_EQ(r.out, "");
    auto f = ember::GGUFFile::open(out);
    EXPECT_EQ(f->get_u32("general.file_type"), 7u);
    std::remove(out.c_str());
}

TEST(QuantizeE2E, FtypeIdAndPositionalThreads) {
    const std::string out = temp_path("q4.gguf");
    const RunResult r = run({kModel, out, "2", "1"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(has(r.err, "as Q4_0 (ftype 2)")) << r.err;
    EXPECT_TRUE(has(r.err, "1 threads")) << r.err;
    EXPECT_EQ(ember::GGUFFile::open(out)->get_u32("general.file_type"), 2u);
    std::remove(out.c_str());
}

TEST(QuantizeE2E, HelpAndUsageErrors) {
    RunResult r = run({"--help"});
    EXPECT_EQ(r.rc, 0);
    EXPECT_TRUE(has(r.out, "usage: ember-quantize")) << r.out;
    EXPECT_TRUE(has(r.out, "32  or  BF16")) << r.out;

    r = run({kModel, temp_path("x.gguf")});
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(has(r.err, "usage: ember-quantize")) << r.err;
    EXPECT_TRUE(has(r.err, "error: expected IN.gguf OUT.gguf TYPE")) << r.err;

    r = run({kModel, temp_path("x.gguf"), "q5_k"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(has(r.err, "error: unknown quantization type 'q5_k'")) << r.err;
    EXPECT_TRUE(has(r.err, "Q4_0 (2)")) << r.err;

    r = run({kModel, temp_path("x.gguf"), "q8_0", "--pure"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(has(r.err, "unknown argument '--pure'")) << r.err;

    r = run({kModel, temp_path("x.gguf"), "q8_0", "-t", "many"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(has(r.err, "-t: invalid value 'many'")) << r.err;
    EXPECT_FALSE(exists(temp_path("x.gguf")));
}

TEST(QuantizeE2E, MissingInputIsNamed) {
    const RunResult r = run({"/nonexistent/m.gguf", temp_path("y.gguf"), "q8_0"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(has(r.err, "error: /nonexistent/m.gguf: cannot open")) << r.err;
}

TEST(QuantizeE2E, RefusesInputAsOutputAndKeepsIt) {
    const std::string in = temp_path("in.gguf"), link = temp_path("link.gguf");
    std::ofstream(in, std::ios::binary) << slurp(kModel);
    ASSERT_EQ(::symlink(in.c_str(), link.c_str()), 0);
    const std::string before = slurp(in);
    for (const std::string& out : {in, link}) {
        const RunResult r = run({in, out, "q4_0"});
        EXPECT_EQ(r.rc, 1);
        EXPECT_TRUE(has(r.err, "is the input file")) << r.err;
        EXPECT_TRUE(slurp(in) == before);
    }
    std::remove(link.c_str());
    std::remove(in.c_str());
}

TEST(QuantizeE2E, RequantizeNeedsTheFlag) {
    const std::string q8 = temp_path("rq8.gguf"), q4 = temp_path("rq4.gguf");
    ASSERT_EQ(run({kModel, q8, "Q8_0"}).rc, 0);
    RunResult r = run({q8, q4, "Q4_0"});
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(has(r.err, "--allow-requantize")) << r.err;
    r = run({"--allow-requantize", q8, q4, "Q4_0"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(has(r.err, "WARNING: requantizing")) << r.err;
    std::remove(q8.c_str());
    std::remove(q4.c_str());
}

// A full disk, simulated by a file size limit (SIGXFSZ ignored so write() fails with EFBIG): exit 1, the error
// names the file, no OUT and no OUT.tmp left, an existing OUT kept as it was.
TEST(QuantizeE2E, WriteFailureLeavesNoFileBehind) {
    const std::string out = temp_path("full.gguf");
    RunResult r = run({kModel, out, "f16"}, "trap '' XFSZ; ulimit -f 64; ");
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(has(r.err, out + ".tmp")) << r.err;
    EXPECT_TRUE(has(r.err, "failed")) << r.err;
    EXPECT_FALSE(exists(out));
    EXPECT_FALSE(exists(out + ".tmp"));

    std::ofstream(out, std::ios::binary) << "the user's file";
    r = run({kModel, out, "f16"}, "trap '' XFSZ; ulimit -f 64; ");
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(has(r.err, "left as it was")) << r.err;
    EXPECT_EQ(slurp(out), "the user's file");
    EXPECT_FALSE(exists(out + ".tmp"));
    std::remove(out.c_str());
}

}  // namespace
