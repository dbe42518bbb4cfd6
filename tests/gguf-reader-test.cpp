// GGUF reader on real files written by other tools (llama2.c's converter, llama.cpp's quantizer and vocab dumps),
// and the typed getters' conversions and errors.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/gguf.h"
#include "tests/gguf-test-util.h"

using namespace ember;
using namespace ember_test;

namespace {

const std::string k_stories = EMBER_SHARED_DIR "/testdata/stories260K.gguf";
const std::string k_stories_f16 = EMBER_SHARED_DIR "/testdata/stories260K-f16.gguf";

// Invariants every parsed file must satisfy, whoever wrote it.
void expect_consistent(const GGUFFile& f) {
    EXPECT_EQ(f.data_offset() % f.alignment(), 0u);
    for (const auto& t : f.tensors()) {
        SCOPED_TRACE(t.name);
        uint64_t bb = 0, be = 0;
        ASSERT_TRUE(gguf_type_block(t.type, &bb, &be));
        EXPECT_EQ(t.n_bytes, uint64_t(t.n_elements()) / be * bb);
        EXPECT_EQ(t.offset % f.alignment(), 0u);
        EXPECT_EQ(static_cast<const uint8_t*>(t.data), f.file_data() + f.data_offset() + t.offset);
        EXPECT_LE(f.data_offset() + t.offset + t.n_bytes, f.file_size());
        EXPECT_EQ(f.find_tensor(t.name), &t);
    }
}

}  // namespace

TEST(gguf_reader, Stories260K) {
    auto f = GGUFFile::open(k_stories);
    EXPECT_EQ(f->path(), k_stories);
    EXPECT_EQ(f->version(), 3u);
    EXPECT_FALSE(f->is_powerinfer());
    EXPECT_EQ(f->file_size(), 1185376u);
    EXPECT_EQ(f->alignment(), 32u);
    ASSERT_EQ(f->metadata().size(), 19u);
    ASSERT_EQ(f->tensors().size(), 48u);
    EXPECT_EQ(f->metadata()[0].first, "tokenizer.ggml.tokens");  // file order is kept

    EXPECT_EQ(f->get_string("general.architecture"), "llama");
    EXPECT_EQ(f->get_u32("llama.embedding_length"), 64u);
    EXPECT_EQ(f->get_u32("llama.block_count"), 5u);
    EXPECT_EQ(f->get_u32("llama.feed_forward_length"), 172u);
    EXPECT_EQ(f->get_u32("llama.attention.head_count"), 8u);
    EXPECT_EQ(f->get_u32("llama.attention.head_count_kv"), 4u);
    EXPECT_EQ(f->get_i32("llama.block_count"), 5);
    EXPECT_EQ(f->get_u64("llama.embedding_length"), 64u);
    EXPECT_GT(f->get_f32("llama.attention.layer_norm_rms_epsilon"), 0.f);
    EXPECT_LT(f->get_f32("llama.attention.layer_norm_rms_epsilon"), 1e-3f);

    auto tokens = f->get_string_array("tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.size(), 512u);
    EXPECT_EQ(tokens[0], "<unk>");
    EXPECT_EQ(tokens[1], "<s>");
    EXPECT_EQ(tokens[2], "</s>");
    EXPECT_EQ(f->get_f32_array("tokenizer.ggml.scores").size(), 512u);
    auto types = f->get_i32_array("tokenizer.ggml.token_type");
    ASSERT_EQ(types.size(), 512u);
    EXPECT_EQ(types[1], 3);  // <s> is a control token

    const GGUFTensorInfo* t = f->find_tensor("blk.0.ffn_gate.weight");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->n_dims, 2u);
    EXPECT_EQ(t->ne[0], 64);
    EXPECT_EQ(t->ne[1], 172);
    EXPECT_EQ(t->ne[2], 1);
    EXPECT_EQ(t->ne[3], 1);
    EXPECT_EQ(t->type, 0u);
    EXPECT_STREQ(gguf_ggml_type_name(t->type), "F32");
    EXPECT_EQ(t->n_bytes, 64u * 172 * 4);
    EXPECT_EQ(f->find_tensor("no.such.tensor"), nullptr);
    EXPECT_EQ(f->tensors().front().name, "token_embd.weight");
    EXPECT_EQ(f->tensors().back().name, "blk.4.ffn_norm.weight");
    // Trained weights: finite and not all zero.
    const float* w = static_cast<const float*>(t->data);
    double sum = 0;
    for (int64_t k = 0; k < t->n_elements(); k++) {
        ASSERT_TRUE(std::isfinite(w[k]));
        sum += std::fabs(w[k]);
    }
    EXPECT_GT(sum, 0.0);
    expect_consistent(*f);
}

TEST(gguf_reader, Stories260KF16ByLlamaCpp) {
    auto f32 = GGUFFile::open(k_stories);
    auto f16 = GGUFFile::open(k_stories_f16);
    EXPECT_EQ(f16->version(), 3u);
    EXPECT_EQ(f16->metadata().size(), 21u);
    EXPECT_EQ(f16->get_u32("general.file_type"), 1u);  // LLAMA_FTYPE_MOSTLY_F16
    ASSERT_EQ(f16->tensors().size(), f32->tensors().size());
    for (const auto& t : f32->tensors()) {
        SCOPED_TRACE(t.name);
        const GGUFTensorInfo* h = f16->find_tensor(t.name);
        ASSERT_NE(h, nullptr);
        for (int d = 0; d < 4; d++) EXPECT_EQ(h->ne[d], t.ne[d]);
        EXPECT_EQ(h->type, t.n_dims == 1 ? 0u : 1u);  // norms stay F32, matrices become F16
    }
    expect_consistent(*f16);
}

TEST(gguf_reader, VocabOnlyFilesEndBeforeTheDataSection) {
    // No tensors: the file may end inside the padding that would precede the data.
    for (const char* name : {"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf"}) {
        SCOPED_TRACE(name);
        auto f = GGUFFile::open(std::string(EMBER_SHARED_DIR "/testdata/tokenizer/") + name);
        EXPECT_TRUE(f->tensors().empty());
        EXPECT_GE(f->get_string_array("tokenizer.ggml.tokens").size(), 32000u);
    }
    auto gpt2 = GGUFFile::open(EMBER_SHARED_DIR "/testdata/tokenizer/ggml-vocab-gpt-2.gguf");
    EXPECT_EQ(gpt2->get_string_array("tokenizer.ggml.merges").size(), 50000u);
    auto spm = GGUFFile::open(EMBER_SHARED_DIR "/testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    EXPECT_TRUE(spm->get_bool("tokenizer.ggml.add_bos_token", false));
    EXPECT_FALSE(spm->get_bool("tokenizer.ggml.add_eos_token", true));
}

TEST(gguf_reader, FromMemoryMatchesOpen) {
    auto bytes = read_bytes(k_stories);
    auto m = GGUFFile::from_memory(bytes.data(), bytes.size(), "mem.gguf");
    auto f = GGUFFile::open(k_stories);
    EXPECT_EQ(m->path(), "mem.gguf");
    EXPECT_EQ(m->file_data(), bytes.data());
    EXPECT_EQ(m->data_offset(), f->data_offset());
    ASSERT_EQ(m->tensors().size(), f->tensors().size());
    for (size_t k = 0; k < f->tensors().size(); k++) {
        EXPECT_EQ(m->tensors()[k].offset, f->tensors()[k].offset);
        EXPECT_EQ(0, std::memcmp(m->tensors()[k].data, f->tensors()[k].data, f->tensors()[k].n_bytes));
    }
}

TEST(gguf_reader, OpenErrorsNameThePath) {
    TempDir dir;
    std::string missing = dir.file("missing.gguf");
    EXPECT_NE(error_of([&] { GGUFFile::open(missing); }).find(missing + ": cannot open"), std::string::npos);
    EXPECT_NE(error_of([&] { GGUFFile::open(dir.path); }).find(dir.path + ": not a regular file"), std::string::npos);
    std::string empty = dir.file("empty.gguf");
    write_bytes(empty, {});
    EXPECT_NE(error_of([&] { GGUFFile::open(empty); }).find(empty + ": offset 0: not a GGUF file"), std::string::npos);
}

TEST(gguf_reader, TypeBlocks) {
    struct {
        uint32_t id;
        const char* name;
        uint64_t bytes, elems;
    } expect[] = {{0, "F32", 4, 1},         {1, "F16", 2, 1},         {2, "Q4_0", 18, 32},      {3, "Q4_1", 20, 32},
                  {6, "Q5_0", 22, 32},      {7, "Q5_1", 24, 32},      {8, "Q8_0", 34, 32},      {9, "Q8_1", 36, 32},
                  {10, "Q2_K", 84, 256},    {11, "Q3_K", 110, 256},   {12, "Q4_K", 144, 256},   {13, "Q5_K", 176, 256},
                  {14, "Q6_K", 210, 256},   {15, "Q8_K", 292, 256},   {16, "IQ2_XXS", 66, 256}, {17, "IQ2_XS", 74, 256},
                  {18, "IQ3_XXS", 98, 256}, {19, "IQ1_S", 50, 256},   {20, "IQ4_NL", 18, 32},   {21, "IQ3_S", 110, 256},
                  {22, "IQ2_S", 82, 256},   {23, "IQ4_XS", 136, 256}, {24, "I8", 1, 1},         {25, "I16", 2, 1},
                  {26, "I32", 4, 1},        {27, "I64", 8, 1},        {28, "F64", 8, 1},        {29, "IQ1_M", 56, 256},
                  {30, "BF16", 2, 1},       {34, "TQ1_0", 54, 256},   {35, "TQ2_0", 66, 256},   {39, "MXFP4", 17, 32}};
    for (const auto& e : expect) {
        SCOPED_TRACE(e.name);
        uint64_t bb = 0, be = 0;
        ASSERT_TRUE(gguf_type_block(e.id, &bb, &be));
        EXPECT_EQ(bb, e.bytes);
        EXPECT_EQ(be, e.elems);
        EXPECT_STREQ(gguf_ggml_type_name(e.id), e.name);
    }
    for (uint32_t retired : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u})
        EXPECT_FALSE(gguf_type_block(retired, nullptr, nullptr));
    EXPECT_FALSE(gguf_type_block(1000, nullptr, nullptr));
    EXPECT_STREQ(gguf_ggml_type_name(31), "Q4_0_4_4");
    EXPECT_STREQ(gguf_ggml_type_name(1000), "unknown");
    EXPECT_STREQ(gguf_type_name(GGUFType::GGUF_TYPE_FLOAT64), "FLOAT64");
}

// Getter conversions on a file written with one key of each kind.
class gguf_getters : public ::testing::Test {
protected:
    void SetUp() override {
        GGUFWriter w;
        GGUFValue v;
        v.type = GGUFType::GGUF_TYPE_INT8;
        v.i = -5;
        w.set_value("neg_i8", v);
        v.type = GGUFType::GGUF_TYPE_UINT16;
        v.u = 65535;
        w.set_value("u16", v);
        w.set_u64("big_u64", uint64_t(1) << 40);
        w.set_i32("i32", -7);
        v.type = GGUFType::GGUF_TYPE_FLOAT64;
        v.f = 0.25;
        w.set_value("f64", v);
        w.set_string("str", "hello");
        w.set_bool("flag", true);
        w.set_string_array("strs", {"a", "b"});
        w.set_i32_array("ints", {1, -2});
        w.set_f32_array("floats", {0.5f});
        GGUFValue arr;
        arr.type = GGUFType::GGUF_TYPE_ARRAY;
        arr.elem_type = GGUFType::GGUF_TYPE_UINT32;
        arr.arr.resize(2, GGUFValue{});
        for (auto& e : arr.arr) e.type = GGUFType::GGUF_TYPE_UINT32;
        arr.arr[0].u = 7;
        arr.arr[1].u = 3000000000u;
        w.set_value("u32s", arr);
        w.write(dir.file("getters.gguf"));
        f = GGUFFile::open(dir.file("getters.gguf"));
    }
    TempDir dir;
    std::unique_ptr<GGUFFile> f;
};

TEST_F(gguf_getters, ConvertIntegersThatFit) {
    EXPECT_EQ(f->get_i32("neg_i8"), -5);
    EXPECT_EQ(f->get_u32("u16"), 65535u);
    EXPECT_EQ(f->get_i32("u16"), 65535);
    EXPECT_EQ(f->get_u64("big_u64"), uint64_t(1) << 40);
    EXPECT_EQ(f->get_i32("i32"), -7);
    EXPECT_FLOAT_EQ(f->get_f32("f64"), 0.25f);
    EXPECT_EQ(f->get_string("str"), "hello");
    EXPECT_TRUE(f->get_bool("flag", false));
    EXPECT_EQ(f->get_string_array("strs"), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(f->get_i32_array("ints"), (std::vector<int32_t>{1, -2}));
    EXPECT_EQ(f->get_f32_array("floats"), (std::vector<float>{0.5f}));
}

TEST_F(gguf_getters, FallbacksOnlyWhenAbsent) {
    EXPECT_EQ(f->get_u32("absent", 9u), 9u);
    EXPECT_EQ(f->get_i32("absent", -9), -9);
    EXPECT_EQ(f->get_f32("absent", 1.5f), 1.5f);
    EXPECT_EQ(f->get_string("absent", "x"), "x");
    EXPECT_FALSE(f->get_bool("absent", false));
    EXPECT_EQ(f->get_u32("u16", 9u), 65535u);
    EXPECT_THROW(f->get_u32("str", 9u), Error);  // present but wrong: never the fallback
    EXPECT_THROW(f->get_bool("str", true), Error);
}

TEST_F(gguf_getters, ErrorsNameFileKeyValueAndType) {
    const std::string path = dir.file("getters.gguf");
    std::string e = error_of([&] { f->get_u32("neg_i8"); });
    EXPECT_NE(e.find(path + ": offset "), std::string::npos) << e;
    EXPECT_NE(e.find("key 'neg_i8': value -5 (INT8) does not fit in uint32"), std::string::npos) << e;
    e = error_of([&] { f->get_i32("big_u64"); });
    EXPECT_NE(e.find("value 1099511627776 (UINT64) does not fit in int32"), std::string::npos) << e;
    e = error_of([&] { f->get_u32("missing"); });
    EXPECT_EQ(e, path + ": key 'missing' not found (expected uint32)");
    e = error_of([&] { f->get_string("i32"); });
    EXPECT_NE(e.find("key 'i32': expected STRING, found INT32"), std::string::npos) << e;
    e = error_of([&] { f->get_f32("str"); });
    EXPECT_NE(e.find("key 'str': expected FLOAT32 or FLOAT64, found STRING"), std::string::npos) << e;
    e = error_of([&] { f->get_string_array("ints"); });
    EXPECT_NE(e.find("key 'ints': expected ARRAY of STRING, found ARRAY of INT32"), std::string::npos) << e;
    e = error_of([&] { f->get_f32_array("str"); });
    EXPECT_NE(e.find("key 'str': expected ARRAY of FLOAT32, found STRING"), std::string::npos) << e;
    e = error_of([&] { f->get_i32_array("u32s"); });
    EXPECT_NE(e.find("key 'u32s': element 1: value 3000000000 (UINT32) does not fit in int32"), std::string::npos) << e;
    e = error_of([&] { f->get_i32_array("strs"); });
    EXPECT_NE(e.find("found ARRAY of STRING"), std::string::npos) << e;
}
