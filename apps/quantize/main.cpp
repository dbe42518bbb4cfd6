// ember-quantize: converts a GGUF model's weights to F32, F16, BF16, Q8_0 or Q4_0 (engine/quantize.h), with
// llama-quantize's command line: IN OUT TYPE [N_THREADS]. Progress and the summary go to stderr.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "apps/app-args.h"
#include "engine/quantize.h"

using namespace ember;

namespace {

std::string usage() {
    std::string u =
        "usage: ember-quantize [--allow-requantize] [--leave-output-tensor] [-t N] IN.gguf OUT.gguf TYPE "
        "[N_THREADS]\n"
        "\n"
        "  --allow-requantize     also convert tensors that are already Q8_0/Q4_0\n"
        "                         (quality drops compared with quantizing the F32/F16/BF16 model)\n"
        "  --leave-output-tensor  keep output.weight in its input type\n"
        "  -t, --threads N        threads (default: physical cores; N_THREADS after TYPE does the same)\n"
        "  --version              print the version and exit\n"
        "  -h, --help             this help\n"
        "\n"
        "OUT is written to OUT.tmp, then renamed; OUT may not be IN (also through a symlink or hard link).\n"
        "\n"
        "types (name in any case, or llama.cpp's ftype id):\n";
    for (const QuantizeTarget& t : quantize_targets()) {
        char line[64];
        std::snprintf(line, sizeof line, "  %2u  or  %s\n", t.ftype, t.name);
        u += line;
    }
    return u;
}

int threads_value(const std::string& flag, const std::string& v) {
    const long long n = ArgParser::parse_integer(flag, v);
    if (n < 0 || n > 4096) throw Error(flag + ": invalid value '" + v + "' (expected 0..4096; 0 = physical cores)");
    return (int)n;
}

int run(int argc, char** argv) {
    QuantizeParams p;
    std::vector<std::string> pos;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            std::fputs(usage().c_str(), stdout);
            return 0;
        } else if (a == "--version") {
            std::printf("%s\n", version_string().c_str());
            return 0;
        } else if (a == "--allow-requantize") {
            p.allow_requantize = true;
        } else if (a == "--leave-output-tensor") {
            p.leave_output_tensor = true;
        } else if (a == "-t" || a == "--threads") {
            if (i + 1 >= argc) throw Error(a + ": missing value (expected N)");
            p.n_threads = threads_value(a, argv[++i]);
        } else if (a.size() > 1 && a[0] == '-') {
            throw Error("unknown argument '" + a + "' (see ember-quantize --help)");
        } else {
            pos.push_back(a);
        }
    }
    if (pos.size() < 3 || pos.size() > 4) {
        std::fputs(usage().c_str(), stderr);
        throw Error("expected IN.gguf OUT.gguf TYPE [N_THREADS], found " + std::to_string(pos.size()) +
                    " positional argument(s)");
    }
    p.type = quantize_parse_target(pos[2]).type;
    if (pos.size() == 4) p.n_threads = threads_value("N_THREADS", pos[3]);
    p.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };

    const auto t0 = std::chrono::steady_clock::now();
    quantize_model(pos[0], pos[1], p);
    std::fprintf(stderr, "\nmain: quantize time = %10.2f ms\n",
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return app_run([&] { return run(argc, argv); });
}
