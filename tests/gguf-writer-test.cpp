// GGUF writer: every value type and several tensor types survive a writer -> reader round trip; a real model
// copied through set_value/add_tensor comes back byte for byte; bad input is refused at add time; write() is
// atomic.
#include <gtest/gtest.h>

#include <random>

#include "engine/gguf.h"
#include "tests/gguf-test-util.h"

using namespace ember;
using namespace ember_test;

namespace {

GGUFValue val(GGUFType t) {
    GGUFValue v;
    v.type = t;
    return v;
}
GGUFValue uval(GGUFType t, uint64_t u) {
    GGUFValue v = val(t);
    v.u = u;
    return v;
}
GGUFValue ival(GGUFType t, int64_t i) {
    GGUFValue v = val(t);
    v.i = i;
    return v;
}
GGUFValue fval(GGUFType t, double f) {
    GGUFValue v = val(t);
    v.f = f;
    return v;
}
GGUFValue sval(const std::string& s) {
    GGUFValue v = val(GGUFType::GGUF_TYPE_STRING);
    v.s = s;
    return v;
}
GGUFValue bval(bool b) {
    GGUFValue v = val(GGUFType::GGUF_TYPE_BOOL);
    v.b = b;
    return v;
}
GGUFValue aval(GGUFType elem, std::vector<GGUFValue> items) {
    GGUFValue v = val(GGUFType::GGUF_TYPE_ARRAY);
    v.elem_type = elem;
    v.arr = std::move(items);
    return v;
}

// Deep equality of what a GGUF file can carry (floats compared as the file stores them).
void expect_same(const GGUFValue& a, const GGUFValue& b, const std::string& where) {
    SCOPED_TRACE(where);
    ASSERT_EQ(a.type, b.type);
    switch (a.type) {
        case GGUFType::GGUF_TYPE_UINT8:
        case GGUFType::GGUF_TYPE_UINT16:
        case GGUFType::GGUF_TYPE_UINT32:
        case GGUFType::GGUF_TYPE_UINT64: EXPECT_EQ(a.u, b.u); break;
        case GGUFType::GGUF_TYPE_INT8:
        case GGUFType::GGUF_TYPE_INT16:
        case GGUFType::GGUF_TYPE_INT32:
        case GGUFType::GGUF_TYPE_INT64: EXPECT_EQ(a.i, b.i); break;
        case GGUFType::GGUF_TYPE_FLOAT32: EXPECT_EQ(float(a.f), float(b.f)); break;
        case GGUFType::GGUF_TYPE_FLOAT64: EXPECT_EQ(a.f, b.f); break;
        case GGUFType::GGUF_TYPE_BOOL: EXPECT_EQ(a.b, b.b); break;
        case GGUFType::GGUF_TYPE_STRING: EXPECT_EQ(a.s, b.s); break;
        case GGUFType::GGUF_TYPE_ARRAY:
            ASSERT_EQ(a.elem_type, b.elem_type);
            ASSERT_EQ(a.arr.size(), b.arr.size());
            for (size_t k = 0; k < a.arr.size(); k++)
                expect_same(a.arr[k], b.arr[k], where + "[" + std::to_string(k) + "]");
            break;
    }
}

std::vector<std::pair<std::string, GGUFValue>> every_value_type() {
    using T = GGUFType;
    std::vector<std::pair<std::string, GGUFValue>> kv = {
        {"t.u8", uval(T::GGUF_TYPE_UINT8, 255)},
        {"t.i8", ival(T::GGUF_TYPE_INT8, -128)},
        {"t.u16", uval(T::GGUF_TYPE_UINT16, 65535)},
        {"t.i16", ival(T::GGUF_TYPE_INT16, -32768)},
        {"t.u32", uval(T::GGUF_TYPE_UINT32, 4294967295u)},
        {"t.i32", ival(T::GGUF_TYPE_INT32, INT32_MIN)},
        {"t.u64", uval(T::GGUF_TYPE_UINT64, UINT64_MAX)},
        {"t.i64", ival(T::GGUF_TYPE_INT64, INT64_MIN)},
        {"t.f32", fval(T::GGUF_TYPE_FLOAT32, -1.5e-7)},
        {"t.f64", fval(T::GGUF_TYPE_FLOAT64, 3.141592653589793)},
        {"t.bool0", bval(false)},
        {"t.bool1", bval(true)},
        {"t.str", sval("héllo wörld")},
        {"t.str_empty", sval("")},
        {"t.str_nul", sval(std::string("a\0b", 3))},
        {"t.arr_u8", aval(T::GGUF_TYPE_UINT8, {uval(T::GGUF_TYPE_UINT8, 0), uval(T::GGUF_TYPE_UINT8, 200)})},
        {"t.arr_i16", aval(T::GGUF_TYPE_INT16, {ival(T::GGUF_TYPE_INT16, -3), ival(T::GGUF_TYPE_INT16, 3)})},
        {"t.arr_u64", aval(T::GGUF_TYPE_UINT64, {uval(T::GGUF_TYPE_UINT64, uint64_t(1) << 63)})},
        {"t.arr_i64", aval(T::GGUF_TYPE_INT64, {ival(T::GGUF_TYPE_INT64, -1)})},
        {"t.arr_f64", aval(T::GGUF_TYPE_FLOAT64, {fval(T::GGUF_TYPE_FLOAT64, 1e300)})},
        {"t.arr_bool", aval(T::GGUF_TYPE_BOOL, {bval(true), bval(false)})},
        {"t.arr_str", aval(T::GGUF_TYPE_STRING, {sval("x"), sval("")})},
        {"t.arr_empty", aval(T::GGUF_TYPE_FLOAT32, {})},
        {"t.arr_arr",
         aval(T::GGUF_TYPE_ARRAY, {aval(T::GGUF_TYPE_INT32, {ival(T::GGUF_TYPE_INT32, 1)}),
                                   aval(T::GGUF_TYPE_STRING, {sval("y"), sval("z")}), aval(T::GGUF_TYPE_UINT8, {})})},
    };
    // Eight levels of nesting, the most the reader accepts.
    GGUFValue deep = aval(T::GGUF_TYPE_UINT16, {uval(T::GGUF_TYPE_UINT16, 42)});
    for (int d = 1; d < 8; d++) deep = aval(T::GGUF_TYPE_ARRAY, {deep});
    kv.emplace_back("t.arr_deep", deep);
    return kv;
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> b(n);
    for (auto& x : b) x = uint8_t(rng());
    return b;
}

}  // namespace

TEST(gguf_writer, RoundTripEveryValueTypeAndTensorTypes) {
    TempDir dir;
    GGUFWriter w;
    auto kv = every_value_type();
    for (const auto& p : kv) w.set_value(p.first, p.second);
    w.set_u32("s.u32", 7);
    w.set_i32("s.i32", -7);
    w.set_u64("s.u64", uint64_t(1) << 50);
    w.set_f32("s.f32", 0.125f);
    w.set_bool("s.bool", true);
    w.set_string("s.str", "llama");
    w.set_string_array("s.strs", {"<unk>", "<s>"});
    w.set_f32_array("s.f32s", {1.f, -2.f});
    w.set_i32_array("s.i32s", {INT32_MAX, INT32_MIN});
    w.set_alignment(64);

    struct T {
        std::string name;
        uint32_t type;
        std::vector<int64_t> ne;
        size_t n_bytes;
    };
    std::vector<T> ts = {{"f32", 0, {3, 5}, 60},
                         {"f16", 1, {64}, 128},
                         {"q8_0", 8, {64, 2}, 136},
                         {"q4_k", 12, {256, 1, 2}, 288},
                         {"bf16.4d", 30, {2, 3, 4, 5}, 240},
                         {"i8", 24, {7}, 7},
                         {"empty", 0, {0, 4}, 0},
                         {"tq1_0", 34, {256}, 54}};
    std::vector<std::vector<uint8_t>> data;
    for (size_t k = 0; k < ts.size(); k++) {
        data.push_back(random_bytes(ts[k].n_bytes, uint32_t(k)));
        w.add_tensor(ts[k].name, ts[k].type, ts[k].ne, data[k].data(), data[k].size());
    }
    auto gen = random_bytes(34 * 8, 99);
    int fills = 0;
    w.add_tensor_generated("generated", 8, {64, 4}, gen.size(), [&](uint8_t* dst) {
        fills++;
        std::memcpy(dst, gen.data(), gen.size());
    });
    const std::string path = dir.file("all.gguf");
    w.write(path);
    EXPECT_EQ(fills, 1);
    EXPECT_FALSE(file_exists(path + ".tmp"));

    auto f = GGUFFile::open(path);
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->alignment(), 64u);
    EXPECT_EQ(f->data_offset() % 64, 0u);
    ASSERT_EQ(f->metadata().size(), kv.size() + 10);
    for (size_t k = 0; k < kv.size(); k++) {
        EXPECT_EQ(f->metadata()[k].first, kv[k].first);
        expect_same(f->metadata()[k].second, kv[k].second, kv[k].first);
    }
    EXPECT_EQ(f->get_u32("s.u32"), 7u);
    EXPECT_EQ(f->get_i32("s.i32"), -7);
    EXPECT_EQ(f->get_u64("s.u64"), uint64_t(1) << 50);
    EXPECT_EQ(f->get_f32("s.f32"), 0.125f);
    EXPECT_TRUE(f->get_bool("s.bool", false));
    EXPECT_EQ(f->get_string("s.str"), "llama");
    EXPECT_EQ(f->get_string_array("s.strs"), (std::vector<std::string>{"<unk>", "<s>"}));
    EXPECT_EQ(f->get_f32_array("s.f32s"), (std::vector<float>{1.f, -2.f}));
    EXPECT_EQ(f->get_i32_array("s.i32s"), (std::vector<int32_t>{INT32_MAX, INT32_MIN}));
    EXPECT_EQ(f->get_u32("general.alignment"), 64u);

    ASSERT_EQ(f->tensors().size(), ts.size() + 1);
    for (size_t k = 0; k < ts.size(); k++) {
        const GGUFTensorInfo& t = f->tensors()[k];
        SCOPED_TRACE(ts[k].name);
        EXPECT_EQ(t.name, ts[k].name);
        EXPECT_EQ(t.type, ts[k].type);
        EXPECT_EQ(t.n_dims, ts[k].ne.size());
        for (size_t d = 0; d < 4; d++) EXPECT_EQ(t.ne[d], d < ts[k].ne.size() ? ts[k].ne[d] : 1);
        EXPECT_EQ(t.offset % 64, 0u);
        ASSERT_EQ(t.n_bytes, ts[k].n_bytes);
        if (t.n_bytes) {  // memcmp on a null pointer is undefined even for 0 bytes
            EXPECT_EQ(0, std::memcmp(t.data, data[k].data(), t.n_bytes));
        }
    }
    const GGUFTensorInfo* g = f->find_tensor("generated");
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(0, std::memcmp(g->data, gen.data(), gen.size()));
}

TEST(gguf_writer, CopyOfStories260KIsByteIdentical) {
    // The original was written by gguf-py with the same layout rules (file order, 32-byte padding after every
    // tensor), so copying every key and tensor must reproduce it exactly.
    const std::string src = EMBER_SHARED_DIR "/testdata/stories260K.gguf";
    auto in = GGUFFile::open(src);
    GGUFWriter w;
    for (const auto& kv : in->metadata()) w.set_value(kv.first, kv.second);
    for (const auto& t : in->tensors())
        w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.data, t.n_bytes);
    TempDir dir;
    w.write(dir.file("copy.gguf"));
    EXPECT_TRUE(read_bytes(src) == read_bytes(dir.file("copy.gguf")));
    auto out = GGUFFile::open(dir.file("copy.gguf"));
    ASSERT_EQ(out->metadata().size(), in->metadata().size());
    for (size_t k = 0; k < in->metadata().size(); k++)
        expect_same(out->metadata()[k].second, in->metadata()[k].second, in->metadata()[k].first);
}

TEST(gguf_writer, SettingAKeyAgainReplacesItInPlace) {
    GGUFWriter w;
    w.set_u32("a", 1);
    w.set_string("b", "x");
    w.set_string("a", "two");
    TempDir dir;
    w.write(dir.file("r.gguf"));
    auto f = GGUFFile::open(dir.file("r.gguf"));
    ASSERT_EQ(f->metadata().size(), 2u);
    EXPECT_EQ(f->metadata()[0].first, "a");
    EXPECT_EQ(f->get_string("a"), "two");
}

TEST(gguf_writer, RefusesBadValuesAndTensorsAtAddTime) {
    using T = GGUFType;
    GGUFWriter w;
    auto msg = [&](auto f) { return error_of(f); };
    EXPECT_NE(
        msg([&] { w.set_alignment(48); }).find("key 'general.alignment': expected a nonzero power of two, found 48"),
        std::string::npos);
    EXPECT_NE(msg([&] { w.set_alignment(0); }).find("found 0"), std::string::npos);
    EXPECT_NE(msg([&] {
                  w.set_value("general.alignment", uval(T::GGUF_TYPE_UINT64, 64));
              }).find("expected UINT32, found UINT64"),
              std::string::npos);
    EXPECT_NE(
        msg([&] { w.set_value("k", uval(T::GGUF_TYPE_UINT8, 256)); }).find("key 'k': value 256 does not fit UINT8"),
        std::string::npos);
    EXPECT_NE(msg([&] { w.set_value("k", ival(T::GGUF_TYPE_INT16, 40000)); }).find("does not fit INT16"),
              std::string::npos);
    EXPECT_NE(msg([&] {
                  w.set_value("k", aval(T::GGUF_TYPE_INT32, {ival(T::GGUF_TYPE_INT32, 1), sval("x")}));
              }).find("key 'k': array of INT32: element 1 is STRING"),
              std::string::npos);
    GGUFValue deep = aval(T::GGUF_TYPE_UINT8, {});
    for (int d = 0; d < 8; d++) deep = aval(T::GGUF_TYPE_ARRAY, {deep});
    EXPECT_NE(msg([&] { w.set_value("deep", deep); }).find("nested deeper than 8"), std::string::npos);
    EXPECT_NE(msg([&] { w.set_value("k", val(GGUFType(13))); }).find("unknown value type 13"), std::string::npos);
    EXPECT_NE(msg([&] { w.set_u32("", 1); }).find("key length 0"), std::string::npos);

    std::vector<uint8_t> buf(4096);
    EXPECT_NE(msg([&] {
                  w.add_tensor("w", 0, {4, 4}, buf.data(), 60);
              }).find("tensor 'w': 16 elements of F32 take 64 bytes, found 60"),
              std::string::npos);
    EXPECT_NE(msg([&] {
                  w.add_tensor("w", 8, {33}, buf.data(), 34);
              }).find("tensor 'w': ne[0] = 33 is not a multiple of the Q8_0 block size (32)"),
              std::string::npos);
    EXPECT_NE(msg([&] { w.add_tensor("w", 31, {32}, buf.data(), 18); }).find("ggml type 31 (Q4_0_4_4)"),
              std::string::npos);
    EXPECT_NE(msg([&] { w.add_tensor("w", 77, {32}, buf.data(), 18); }).find("ggml type 77"), std::string::npos);
    EXPECT_NE(msg([&] { w.add_tensor("w", 0, {}, buf.data(), 0); }).find("n_dims must be 1..4, found 0"),
              std::string::npos);
    EXPECT_NE(msg([&] { w.add_tensor("w", 0, {1, 1, 1, 1, 1}, buf.data(), 4); }).find("found 5"), std::string::npos);
    EXPECT_NE(msg([&] { w.add_tensor("w", 0, {-1}, buf.data(), 4); }).find("ne[0] = -1 is negative"),
              std::string::npos);
    EXPECT_NE(msg([&] {
                  w.add_tensor("w", 0, {int64_t(1) << 40, int64_t(1) << 40}, buf.data(), 4);
              }).find("element count overflows"),
              std::string::npos);
    EXPECT_NE(msg([&] { w.add_tensor(std::string(64, 'n'), 0, {1}, buf.data(), 4); }).find("name length 64"),
              std::string::npos);
    w.add_tensor("w", 0, {1}, buf.data(), 4);
    EXPECT_NE(msg([&] { w.add_tensor("w", 0, {1}, buf.data(), 4); }).find("tensor 'w': added twice"),
              std::string::npos);
}

TEST(gguf_writer, FailedWriteLeavesNoTmpAndKeepsTheOldFile) {
    TempDir dir;
    const std::string path = dir.file("model.gguf");
    write_bytes(path, {1, 2, 3});
    GGUFWriter w;
    w.set_u32("a", 1);
    w.add_tensor_generated("t", 0, {4}, 16, [](uint8_t*) { throw std::runtime_error("generator failed"); });
    EXPECT_THROW(w.write(path), std::runtime_error);
    EXPECT_FALSE(file_exists(path + ".tmp"));
    EXPECT_EQ(read_bytes(path), (std::vector<uint8_t>{1, 2, 3}));

    std::string e = error_of([&] { GGUFWriter().write(dir.file("no/such/dir/x.gguf")); });
    EXPECT_NE(e.find(dir.file("no/such/dir/x.gguf.tmp") + ": cannot create"), std::string::npos) << e;
}
