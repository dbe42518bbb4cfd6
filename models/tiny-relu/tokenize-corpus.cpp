// ember-tokenize-corpus: tokenizes a text file of documents for training, with ember's own tokenizer, into a
// binary file of little-endian uint16 token ids: for each document BOS followed by its tokens.
// Documents are separated by "\n\n\n" (two empty lines), as models/tiny-relu/extract.py writes them.
// Usage: ember-tokenize-corpus -m VOCAB.gguf -i TEXT -o OUT.bin [--max-tokens N] [-t THREADS]
// Prints one JSON line: documents, tokens, and the documents left out by --max-tokens.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

namespace {

const char* const kUsage =
    "usage: ember-tokenize-corpus -m VOCAB.gguf -i TEXT -o OUT.bin [--max-tokens N] [-t THREADS]\n"
    "\n"
    "  -m FILE           GGUF file whose tokenizer is used (a vocab-only file will do); at most 65536 tokens\n"
    "  -i FILE           text, documents separated by \"\\n\\n\\n\"\n"
    "  -o FILE           output: uint16 little-endian ids, BOS before each document\n"
    "  --max-tokens N    stop before the first document that would take the total past N (0 = no limit)\n"
    "  -t N              threads (default 1)\n";

struct Args {
    std::string vocab, in, out;
    long long max_tokens = 0;
    int threads = 1;
};

Args parse_args(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; i++) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw ember::Error(arg + ": missing value");
            return argv[++i];
        };
        if (arg == "-h" || arg == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (arg == "-m") {
            a.vocab = value();
        } else if (arg == "-i") {
            a.in = value();
        } else if (arg == "-o") {
            a.out = value();
        } else if (arg == "--max-tokens") {
            const std::string v = value();
            a.max_tokens = std::stoll(v);
            if (a.max_tokens < 0) throw ember::Error("--max-tokens: expected >= 0, found " + v);
        } else if (arg == "-t") {
            const std::string v = value();
            a.threads = std::stoi(v);
            if (a.threads < 1) throw ember::Error("-t: expected >= 1, found " + v);
        } else {
            throw ember::Error("unknown argument '" + arg + "' (see --help)");
        }
    }
    if (a.vocab.empty() || a.in.empty() || a.out.empty()) throw ember::Error("-m, -i and -o are required (see --help)");
    return a;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ember::Error(path + ": cannot open: " + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The documents of `text`: pieces between "\n\n\n" separators, trailing newlines removed, empty ones skipped.
std::vector<std::string> split_documents(const std::string& text) {
    std::vector<std::string> docs;
    size_t begin = 0;
    while (begin <= text.size()) {
        size_t end = text.find("\n\n\n", begin);
        if (end == std::string::npos) end = text.size();
        size_t stop = end;
        while (stop > begin && text[stop - 1] == '\n') stop--;
        if (stop > begin) docs.push_back(text.substr(begin, stop - begin));
        begin = end + 3;
    }
    return docs;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Args args = parse_args(argc, argv);
        auto file = ember::GGUFFile::open(args.vocab);
        auto tok = ember::Tokenizer::from_gguf(*file);
        if (tok->n_vocab() > 65536)
            throw ember::Error(args.vocab + ": " + std::to_string(tok->n_vocab()) +
                               " tokens do not fit uint16 ids (expected at most 65536)");
        if (tok->bos() < 0) throw ember::Error(args.vocab + ": the vocabulary has no BOS token");
        const std::vector<std::string> docs = split_documents(read_file(args.in));

        // Documents are independent: each thread encodes every threads-th one.
        std::vector<std::vector<int32_t>> ids(docs.size());
        std::vector<std::thread> pool;
        std::vector<std::string> errors(args.threads);
        for (int t = 0; t < args.threads; t++)
            pool.emplace_back([&, t] {
                try {
                    for (size_t d = t; d < docs.size(); d += args.threads) ids[d] = tok->encode(docs[d], true, false);
                } catch (const std::exception& e) {
                    errors[t] = e.what();
                }
            });
        for (auto& th : pool) th.join();
        for (const std::string& e : errors)
            if (!e.empty()) throw ember::Error(args.in + ": " + e);

        std::vector<uint16_t> out;
        size_t n_docs = 0;
        for (const std::vector<int32_t>& d : ids) {
            if (args.max_tokens > 0 && (long long)(out.size() + d.size()) > args.max_tokens) break;
            for (int32_t id : d) out.push_back((uint16_t)id);  // little-endian hosts only (x86, arm)
            n_docs++;
        }
        const std::string tmp = args.out + ".tmp";
        std::FILE* f = std::fopen(tmp.c_str(), "wb");
        if (!f) throw ember::Error(tmp + ": cannot create: " + std::strerror(errno));
        const size_t written = std::fwrite(out.data(), sizeof(uint16_t), out.size(), f);
        if (std::fclose(f) != 0 || written != out.size()) throw ember::Error(tmp + ": write failed");
        if (std::rename(tmp.c_str(), args.out.c_str()) != 0)
            throw ember::Error(args.out + ": cannot rename from " + tmp + ": " + std::strerror(errno));
        std::printf("{\"file\": \"%s\", \"documents\": %zu, \"documents_left_out\": %zu, \"tokens\": %zu, "
                    "\"bytes_text\": %zu}\n",
                    args.out.c_str(), n_docs, docs.size() - n_docs, out.size(), [&] {
                        size_t n = 0;
                        for (size_t d = 0; d < n_docs; d++) n += docs[d].size();
                        return n;
                    }());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ember-tokenize-corpus: %s\n", e.what());
        return 1;
    }
}
