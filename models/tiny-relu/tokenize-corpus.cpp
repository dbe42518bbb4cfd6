// ember-tokenize-corpus: tokenizes a text file of documents for training, with ember's own tokenizer, into a
// binary file of little-endian uint16 token ids: for each document BOS followed by its tokens.
// Documents are separated by "\n\n\n" (two empty lines), as models/tiny-relu/extract.py writes them.
// Usage: ember-tokenize-corpus -m VOCAB.gguf -i TEXT -o OUT.bin [--max-tokens N] [-t THREADS]
// Prints one JSON line: documents, tokens, and the documents left out by --max-tokens.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "apps/app-args.h"
#include "apps/app-io.h"
#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

namespace {

struct Args {
    std::string vocab, in, out;
    int64_t max_tokens = 0;
    int threads = 1;
};

// Returns false when the tool should exit 0 (--help, --version).
bool parse_args(int argc, char** argv, Args& a) {
    ember::ArgParser args("ember-tokenize-corpus",
                          "Tokenizes a text of documents into uint16 little-endian ids, BOS before each document.\n"
                          "-m, -i and -o are required.");
    args.add_string({"-m"}, &a.vocab, "FILE",
                    "GGUF file whose tokenizer is used (a vocab-only file will do); at most 65536 tokens");
    args.add_string({"-i"}, &a.in, "FILE", "text, documents separated by \"\\n\\n\\n\"");
    args.add_string({"-o"}, &a.out, "FILE", "output: uint16 little-endian ids, BOS before each document");
    args.add_i64({"--max-tokens"}, &a.max_tokens,
                 "stop before the first document that would take the total past N (0 = no limit)");
    args.add_int({"-t"}, &a.threads, "threads");
    if (!ember::app_parse_args(args, argc, argv)) return false;
    if (a.max_tokens < 0) throw ember::Error("--max-tokens: expected >= 0, found " + std::to_string(a.max_tokens));
    if (a.threads < 1) throw ember::Error("-t: expected >= 1, found " + std::to_string(a.threads));
    if (a.vocab.empty() || a.in.empty() || a.out.empty()) throw ember::Error("-m, -i and -o are required (see --help)");
    return true;
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
    return ember::app_run([&] {
        Args args;
        if (!parse_args(argc, argv, args)) return 0;
        auto file = ember::GGUFFile::open(args.vocab);
        auto tok = ember::Tokenizer::from_gguf(*file);
        if (tok->n_vocab() > 65536)
            throw ember::Error(args.vocab + ": " + std::to_string(tok->n_vocab()) +
                               " tokens do not fit uint16 ids (expected at most 65536)");
        if (tok->bos() < 0) throw ember::Error(args.vocab + ": the vocabulary has no BOS token");
        const std::vector<std::string> docs = split_documents(ember::app_read_file("-i", args.in));

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
    });
}
