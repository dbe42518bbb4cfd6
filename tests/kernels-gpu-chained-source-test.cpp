// The rule of chained launches (kernels-gpu/launch.cuh), checked on the sources so that it holds on machines without
// a GPU too: every kernel that kernels-gpu launches through launch_chained starts with wait_for_previous_kernel()
// followed by release_next_kernel(). A kernel that touched global memory before the wait could read its
// predecessor's output unfinished; the GPU tests would catch that only when the timing happens to expose it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace {

const std::filesystem::path kKernelsDir = std::filesystem::path(EMBER_SOURCE_DIR) / "kernels-gpu";

std::string read_file(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

// The body's first statements of the __global__ function `name` in src, or "" where src defines none.
std::string body_start(const std::string& src, const std::string& name) {
    const std::regex def("__global__[^;{]*?\\b" + name + "\\s*\\(");
    std::smatch m;
    if (!std::regex_search(src, m, def)) return "";
    size_t i = (size_t)(m.position(0) + m.length(0));
    int depth = 1;
    for (; i < src.size() && depth > 0; i++) depth += src[i] == '(' ? 1 : src[i] == ')' ? -1 : 0;
    const size_t brace = src.find('{', i);
    if (brace == std::string::npos) return "";
    std::string rest = src.substr(brace + 1, 200);
    rest.erase(0, rest.find_first_not_of(" \t\r\n"));
    return rest;
}

TEST(ChainedLaunchSources, EveryChainedKernelWaitsFirst) {
    ASSERT_TRUE(std::filesystem::is_directory(kKernelsDir)) << kKernelsDir;
    std::map<std::string, std::string> sources;  // file name -> text
    for (const auto& e : std::filesystem::directory_iterator(kKernelsDir))
        if (e.path().extension() == ".cu") sources[e.path().filename().string()] = read_file(e.path());
    ASSERT_FALSE(sources.empty());

    const std::regex launch("launch_chained\\(\\s*([A-Za-z_][A-Za-z0-9_]*)");
    std::set<std::string> checked;
    for (const auto& [file, src] : sources) {
        for (auto it = std::sregex_iterator(src.begin(), src.end(), launch); it != std::sregex_iterator(); ++it) {
            const std::string name = (*it)[1];
            if (!checked.insert(name).second) continue;
            const std::string start = body_start(src, name);
            ASSERT_FALSE(start.empty()) << file << ": kernel " << name << " is launched chained but not defined there";
            EXPECT_EQ(start.rfind("wait_for_previous_kernel();", 0), 0u)
                << file << ": kernel " << name << " must begin with wait_for_previous_kernel(); it begins with:\n"
                << start;
            const size_t next = start.find(';') + 1;
            std::string second = start.substr(next);
            second.erase(0, second.find_first_not_of(" \t\r\n"));
            EXPECT_EQ(second.rfind("release_next_kernel();", 0), 0u)
                << file << ": kernel " << name << " must call release_next_kernel() right after the wait";
        }
    }
    // The decode step's kernels at least: a change that stopped chaining them would show here.
    for (const char* k : {"rmsnorm_kernel", "rmsnorm_vec_kernel", "matvec_quant_async_kernel", "matvec_quant_xreg_kernel", "matvec_kernel",
                          "quantize_q8_kernel", "rope_store_kv_kernel", "attn_partial_kernel", "attn_combine_kernel",
                          "add_kernel", "copy_signal_kernel", "wait_kernel", "add_from_host_kernel",
                          "down_partial_kernel", "swiglu_kernel", "reglu_kernel"})
        EXPECT_TRUE(checked.count(k)) << k << " is no longer launched through launch_chained";
}

// The check itself: a kernel whose first statement is something else is caught.
TEST(ChainedLaunchSources, BodyStartFindsTheFirstStatement) {
    const std::string src =
        "__global__ void __launch_bounds__(256)\n    k1(const float* __restrict__ x, int n) {\n"
        "    wait_for_previous_kernel();\n    release_next_kernel();\n    x[0];\n}\n"
        "template <int N>\n__global__ void k2(float* y) {\n    y[0] = 1;\n    wait_for_previous_kernel();\n}\n";
    EXPECT_EQ(body_start(src, "k1").rfind("wait_for_previous_kernel();", 0), 0u);
    EXPECT_EQ(body_start(src, "k2").rfind("y[0] = 1;", 0), 0u);
    EXPECT_EQ(body_start(src, "k3"), "");
}

}  // namespace
