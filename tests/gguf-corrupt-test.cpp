// Malformed GGUF input: each corruption class gives an ember::Error naming the file, the key or tensor and what
// was expected; truncation at every byte of a real header throws cleanly; PWRI is accepted, v1 and big-endian
// refused. The same crafted files are the fuzzer's seed corpus (tests/fuzz/gguf-corpus/); to regenerate it run
//   EMBER_GGUF_WRITE_CORPUS=1 build/bin/test-gguf --gtest_filter='gguf_corpus.*'
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "engine/gguf.h"
#include "tests/gguf-test-util.h"

using namespace ember;
using namespace ember_test;

namespace {

using T = GGUFType;
constexpr uint32_t F32 = 0, Q8_0 = 8, F64 = 28;

// A small valid file: 3 keys, two tensors ("tok" F32 [8, 2] at 0, "blk.0.w" Q8_0 [32] at 64).
Bytes valid(uint32_t version = 3, const char* magic = "GGUF") {
    Bytes b = Bytes::header(2, 3, version, magic);
    b.kv_str("general.architecture", "llama").kv_u32("llama.block_count", 1);
    b.kv("tokenizer.ggml.token_type", T::GGUF_TYPE_ARRAY).u32(uint32_t(T::GGUF_TYPE_INT32)).u64(2).u32(1).u32(3);
    b.tensor("tok", {8, 2}, F32, 0).tensor("blk.0.w", {32}, Q8_0, 64);
    return b.data(64 + 34);
}

// One tensor named "w" with the given shape, type and offset, data of n bytes after 32-byte padding.
Bytes one_tensor(std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t n) {
    Bytes b = Bytes::header(1, 0);
    b.tensor("w", ne, type, offset);
    return b.data(n);
}

// A file with one key "k" of type t; `value` appends its encoding.
template <class F>
Bytes one_key(const std::string& key, uint32_t t, F value) {
    Bytes b = Bytes::header(0, 1);
    b.str(key).u32(t);
    value(b);
    return b;
}

struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    std::vector<std::string> expect;  // substrings of the message, besides "<name>.gguf: offset "
};

std::vector<Case> corrupt_cases() {
    std::vector<Case> c;
    auto add = [&](const char* name, const Bytes& b, std::vector<std::string> expect) {
        c.push_back({name, b.b, std::move(expect)});
    };
    Bytes b = valid();
    b.b[3] = 'X';
    add("bad-magic", b, {"offset 0:", "expected magic \"GGUF\" or \"PWRI\", found bytes 47 47 55 58"});
    add("version-1", valid(1), {"offset 4:", "GGUF version 1", "expected version 2 or 3"});
    add("big-endian", valid(0x03000000), {"offset 4:", "big-endian", "version 3"});
    add("version-4", valid(4), {"unsupported GGUF version 4: expected 2 or 3"});
    add("kv-count-huge", Bytes::header(0, uint64_t(1) << 60), {"offset 16:", "metadata count 1152921504606846976"});
    add("tensor-count-huge", Bytes::header(uint64_t(1) << 61, 0), {"offset 8:", "tensor count 2305843009213693952"});
    add("key-length-huge", Bytes::header(0, 1).u64(uint64_t(1) << 62).u64(0).u64(0),
        {"key #0:", "key of 4611686018427387904 bytes"});
    add("string-length-huge", one_key("general.name", 8, [](Bytes& x) { x.u64(1000).str("abc"); }),
        {"key 'general.name':", "string value of 1000 bytes runs past the end"});
    add("array-length-huge",
        one_key("tokenizer.ggml.scores", 9, [](Bytes& x) { x.u32(6).u64(uint64_t(1) << 61).u32(0).u32(0); }),
        {"key 'tokenizer.ggml.scores':", "array of 2305843009213693952 FLOAT32 needs at least 4 bytes each"});
    add("array-of-strings-huge", one_key("tokens", 9, [](Bytes& x) { x.u32(8).u64(5).str("a"); }),
        {"key 'tokens':", "array of 5 STRING"});
    add("array-nesting",
        one_key("nest", 9,
                [](Bytes& x) {
                    for (int d = 0; d < 9; d++) x.u32(9).u64(1);
                    x.u32(0);
                }),
        {"key 'nest':", "arrays nested deeper than 8 levels"});
    add("value-type-unknown", one_key("k", 13, [](Bytes& x) { x.u32(0); }), {"key 'k':", "unknown value type 13"});
    add("elem-type-unknown", one_key("k", 9, [](Bytes& x) { x.u32(42).u64(0); }),
        {"key 'k':", "unknown array element type 42"});
    add("bool-2", one_key("flag", 7, [](Bytes& x) { x.b.push_back(2); }),
        {"key 'flag':", "bool value must be 0 or 1, found 2"});
    add("duplicate-key", Bytes::header(0, 2).kv_u32("general.name", 1).kv_u32("general.name", 2),
        {"offset 52:", "key 'general.name': duplicate key (first at offset 24)"});
    add("alignment-zero", Bytes::header(0, 1).kv_u32("general.alignment", 0),
        {"key 'general.alignment':", "expected a nonzero power of two, found 0"});
    add("alignment-not-pow2", Bytes::header(0, 1).kv_u32("general.alignment", 48),
        {"key 'general.alignment':", "found 48"});
    add("alignment-wrong-type", one_key("general.alignment", 10, [](Bytes& x) { x.u64(32); }),
        {"key 'general.alignment':", "expected UINT32, found UINT64"});
    add("duplicate-tensor", Bytes::header(2, 0).tensor("w", {8}, F32, 0).tensor("w", {8}, F32, 32).data(64),
        {"tensor 'w': duplicate tensor name (first at offset 24)"});
    add("n-dims-0", one_tensor({}, F32, 0, 4), {"tensor 'w':", "n_dims must be 1..4, found 0"});
    add("n-dims-5", one_tensor({1, 1, 1, 1, 1}, F32, 0, 4), {"tensor 'w':", "n_dims must be 1..4, found 5"});
    add("ne-negative", one_tensor({8, uint64_t(-3)}, F32, 0, 32), {"tensor 'w':", "ne[1] = -3 is negative"});
    add("elements-overflow", one_tensor({uint64_t(1) << 32, uint64_t(1) << 32}, F32, 0, 32),
        {"tensor 'w':", "element count of [4294967296, 4294967296] overflows int64"});
    add("bytes-overflow", one_tensor({uint64_t(1) << 62}, F64, 0, 32),
        {"tensor 'w':", "byte size of [4611686018427387904] F64 overflows uint64"});
    add("type-unknown", one_tensor({8}, 99, 0, 32), {"tensor 'w':", "ggml type 99 is unknown"});
    add("type-retired", one_tensor({32}, 31, 0, 18), {"tensor 'w':", "ggml type 31 (Q4_0_4_4) was retired"});
    add("block-multiple", one_tensor({33}, Q8_0, 0, 36),
        {"tensor 'w':", "ne[0] = 33 is not a multiple of the Q8_0 block size (32)"});
    add("offset-unaligned", one_tensor({8}, F32, 4, 64),
        {"tensor 'w':", "data offset 4 is not a multiple of the alignment 32"});
    add("offset-huge", one_tensor({8}, F32, uint64_t(1) << 63, 64), {"tensor 'w':", "runs past the end of the file"});
    add("data-past-end", one_tensor({8, 4}, F32, 0, 100),
        {"offset 24: tensor 'w': data [96, 224) runs past the end of the file (196 bytes)"});
    add("overlap", Bytes::header(2, 0).tensor("a", {16}, F32, 0).tensor("b", {8}, F32, 32).data(64),
        {"tensor 'b': data [128, 160) overlaps tensor 'a' [96, 160)"});
    b = valid();
    b.b.resize(b.b.size() - 1);
    add("truncated-data", b, {"tensor 'blk.0.w':", "runs past the end of the file"});
    b = valid();
    b.b.resize(180);  // inside the dimensions of "tok"
    add("truncated-info", b, {"tensor 'tok':", "truncated"});
    return c;
}

// Valid seeds: hand-built, PowerInfer magic, version 2, and a writer-made file with every value type.
std::vector<std::pair<std::string, std::vector<uint8_t>>> valid_seeds() {
    std::vector<std::pair<std::string, std::vector<uint8_t>>> s = {
        {"valid-small.gguf", valid().b}, {"valid-pwri.gguf", valid(3, "PWRI").b}, {"valid-v2.gguf", valid(2).b}};
    GGUFWriter w;
    w.set_alignment(64);
    w.set_string("general.architecture", "llama");
    w.set_bool("b", true);
    w.set_f32("f", 1e-5f);
    w.set_i32("i", -1);
    w.set_u64("u", 1);
    w.set_string_array("tokenizer.ggml.tokens", {"<unk>", "a", "b"});
    w.set_f32_array("tokenizer.ggml.scores", {0.f, -1.f, -2.f});
    GGUFValue nested;
    nested.type = T::GGUF_TYPE_ARRAY;
    nested.elem_type = T::GGUF_TYPE_ARRAY;
    nested.arr.resize(1);
    nested.arr[0].type = T::GGUF_TYPE_ARRAY;
    nested.arr[0].elem_type = T::GGUF_TYPE_INT16;
    w.set_value("nested", nested);
    std::vector<uint8_t> d(144 * 2, 3);
    w.add_tensor("q4k", 12, {256, 2}, d.data(), 288);
    w.add_tensor("f16", 1, {4, 2}, d.data(), 16);
    w.add_tensor("i32", 26, {3}, d.data(), 12);
    TempDir dir;
    w.write(dir.file("w.gguf"));
    s.emplace_back("valid-writer.gguf", read_bytes(dir.file("w.gguf")));
    return s;
}

std::string corpus_dir() { return EMBER_SOURCE_DIR "/tests/fuzz/gguf-corpus"; }

std::vector<std::string> list_dir(const std::string& dir) {
    std::vector<std::string> out;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d))
            if (e->d_name[0] != '.') out.push_back(dir + "/" + e->d_name);
        closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

TEST(gguf_corrupt, EveryClassNamesFileKeyOrTensorAndWhatWasFound) {
    for (const Case& c : corrupt_cases()) {
        SCOPED_TRACE(c.name);
        std::string name = std::string(c.name) + ".gguf";
        std::string e = error_of([&] { GGUFFile::from_memory(c.bytes.data(), c.bytes.size(), name); });
        EXPECT_EQ(e.rfind(name + ": offset ", 0), 0u) << e;
        for (const auto& s : c.expect) EXPECT_NE(e.find(s), std::string::npos) << "missing '" << s << "' in: " << e;
    }
}

TEST(gguf_corrupt, ValidBaseParses) {
    Bytes b = valid();
    auto f = GGUFFile::from_memory(b.b.data(), b.b.size(), "v.gguf");
    EXPECT_EQ(f->tensors().size(), 2u);
    EXPECT_EQ(f->get_i32_array("tokenizer.ggml.token_type"), (std::vector<int32_t>{1, 3}));
    auto v2 = valid(2);
    EXPECT_EQ(GGUFFile::from_memory(v2.b.data(), v2.b.size(), "v2.gguf")->version(), 2u);
}

TEST(gguf_corrupt, PowerInferMagicIsAccepted) {
    Bytes b = valid(3, "PWRI");
    auto f = GGUFFile::from_memory(b.b.data(), b.b.size(), "relu.powerinfer.gguf");
    EXPECT_TRUE(f->is_powerinfer());
    EXPECT_EQ(f->get_string("general.architecture"), "llama");
    ASSERT_NE(f->find_tensor("blk.0.w"), nullptr);
}

TEST(gguf_corrupt, DataRangeMessageIsExact) {
    Bytes b = one_tensor({8, 4}, F32, 0, 100);
    std::string e = error_of([&] { GGUFFile::from_memory(b.b.data(), b.b.size(), "model.gguf"); });
    EXPECT_EQ(e, "model.gguf: offset 24: tensor 'w': data [96, 224) runs past the end of the file (196 bytes)");
}

TEST(gguf_corrupt, EveryCutOfStories260KThrowsCleanly) {
    auto bytes = read_bytes(EMBER_SHARED_DIR "/testdata/stories260K.gguf");
    auto full = GGUFFile::from_memory(bytes.data(), bytes.size(), "cut.gguf");
    const size_t header_end = full->data_offset();
    ASSERT_GT(header_end, 10000u);
    for (size_t n = 0; n < header_end; n++) {
        std::string e = error_of([&] { GGUFFile::from_memory(bytes.data(), n, "cut.gguf"); });
        ASSERT_EQ(e.rfind("cut.gguf: offset ", 0), 0u) << "cut at " << n << ": " << e;
    }
    // Cuts inside the data section name the tensor whose data is missing.
    for (size_t n = header_end; n < bytes.size(); n += 4099) {
        std::string e = error_of([&] { GGUFFile::from_memory(bytes.data(), n, "cut.gguf"); });
        ASSERT_NE(e.find("runs past the end of the file (" + std::to_string(n) + " bytes)"), std::string::npos) << e;
    }
}

TEST(gguf_corrupt, EveryCutOfASmallFileThrowsCleanly) {
    for (const auto& seed : valid_seeds()) {
        const auto& b = seed.second;
        auto f = GGUFFile::from_memory(b.data(), b.size(), seed.first);
        for (size_t n = 0; n < b.size(); n++) {
            // Only cuts past the last tensor's data may parse (the trailing padding is optional).
            size_t end = 0;
            for (const auto& t : f->tensors()) end = std::max<size_t>(end, f->data_offset() + t.offset + t.n_bytes);
            if (n >= end && n >= f->data_offset()) continue;
            std::string e = error_of([&] { GGUFFile::from_memory(b.data(), n, seed.first); });
            ASSERT_EQ(e.rfind(seed.first + ": offset ", 0), 0u) << "cut at " << n << ": " << e;
        }
    }
}

// The committed seed corpus is exactly what this file generates (so it never goes stale), and every file in it
// and in the crash regressions folder parses or throws ember::Error.
TEST(gguf_corpus, SeedsAreCurrentAndAllInputsFailCleanly) {
    std::vector<std::pair<std::string, std::vector<uint8_t>>> seeds = valid_seeds();
    for (const Case& c : corrupt_cases()) seeds.emplace_back(std::string("crafted-") + c.name + ".gguf", c.bytes);
    const bool write = std::getenv("EMBER_GGUF_WRITE_CORPUS") != nullptr;
    for (const auto& s : seeds) {
        SCOPED_TRACE(s.first);
        EXPECT_LT(s.second.size(), 4096u);
        std::string path = corpus_dir() + "/" + s.first;
        if (write) write_bytes(path, s.second);
        EXPECT_TRUE(read_bytes(path) == s.second) << path << " is stale: regenerate with EMBER_GGUF_WRITE_CORPUS=1";
    }
    auto files = list_dir(corpus_dir());
    auto regressions = list_dir(EMBER_SOURCE_DIR "/tests/fuzz/gguf-regressions");
    files.insert(files.end(), regressions.begin(), regressions.end());
    EXPECT_GE(files.size(), seeds.size());
    for (const auto& path : files) {
        SCOPED_TRACE(path);
        auto b = read_bytes(path);
        try {
            GGUFFile::from_memory(b.data(), b.size(), path);
        } catch (const Error&) {
        }  // anything else escapes and fails the test
    }
}
