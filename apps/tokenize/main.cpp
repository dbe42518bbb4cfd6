// ember-tokenize: prints the tokens of a text under a GGUF file's tokenizer, like llama.cpp's llama-tokenize.
// Reads only the metadata (works on vocab-only files).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "apps/app-io.h"
#include "engine/ember.h"
#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

namespace {

const char* const kUsage =
    "usage: ember-tokenize -m MODEL (-p TEXT | -f FILE) [--ids] [--no-bos] [--no-parse-special] [--show-count]\n"
    "\n"
    "  -m, --model FILE        GGUF file whose tokenizer.ggml.* metadata is used (a vocab-only file will do)\n"
    "  -p, --prompt TEXT       text to tokenize\n"
    "  -f, --file FILE         read the text from FILE (bytes as they are)\n"
    "      --ids               print only the ids, as [1, 2, 3]\n"
    "      --no-bos            never add BOS (by default: when the vocabulary asks for it)\n"
    "      --no-parse-special  treat special-token text (e.g. </s>) as plain text\n"
    "      --show-count        print the number of tokens at the end\n"
    "      --version           print the version and exit\n"
    "  -h, --help              this help\n";

struct Args {
    std::string model, text, file;
    bool have_text = false;
    bool ids_only = false, no_bos = false, parse_special = true, show_count = false;
};

Args parse_args(int argc, char** argv) {
    Args a;
    auto value = [&](int& i) -> std::string {
        if (i + 1 >= argc) throw ember::Error(std::string("option ") + argv[i] + " needs a value");
        return argv[++i];
    };
    for (int i = 1; i < argc; i++) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (arg == "--version") {
            std::printf("%s\n", ember::version_string().c_str());
            std::exit(0);
        } else if (arg == "-m" || arg == "--model") {
            a.model = value(i);
        } else if (arg == "-p" || arg == "--prompt") {
            a.text = value(i);
            a.have_text = true;
        } else if (arg == "-f" || arg == "--file") {
            a.file = value(i);
        } else if (arg == "--ids") {
            a.ids_only = true;
        } else if (arg == "--no-bos") {
            a.no_bos = true;
        } else if (arg == "--no-parse-special") {
            a.parse_special = false;
        } else if (arg == "--show-count") {
            a.show_count = true;
        } else {
            throw ember::Error("unknown argument '" + arg + "' (see --help)");
        }
    }
    if (a.model.empty()) throw ember::Error("missing -m MODEL (see --help)");
    if (a.have_text == !a.file.empty()) throw ember::Error("give exactly one of -p TEXT and -f FILE (see --help)");
    return a;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Args args = parse_args(argc, argv);
        const std::string text = args.have_text ? args.text : ember::app_read_file("-f", args.file);
        auto file = ember::GGUFFile::open(args.model);
        auto tok = ember::Tokenizer::from_gguf(*file);
        const bool add_bos = tok->add_bos_default() && !args.no_bos;
        const std::vector<int32_t> ids = tok->encode(text, add_bos, args.parse_special);
        if (args.ids_only) {
            std::string line = "[";
            for (size_t i = 0; i < ids.size(); i++) line += (i ? ", " : "") + std::to_string(ids[i]);
            std::printf("%s]\n", line.c_str());
        } else {
            for (int32_t id : ids) {
                const std::string piece = tok->token_to_piece(id, true);
                std::printf("%6d -> '", id);
                std::fwrite(piece.data(), 1, piece.size(), stdout);
                std::printf("'\n");
            }
        }
        if (args.show_count) std::printf("Total number of tokens: %zu\n", ids.size());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ember-tokenize: %s\n", e.what());
        return 1;
    }
}
