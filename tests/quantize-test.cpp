// engine/quantize.h on the real stories260K model: every target's tensor types and shapes, metadata, per-block
// error bounds recomputed from the written blocks, logits of the quantized model against the F32 one, bytes
// against a direct quantize_row, and the refusals (IN == OUT through links, requantizing, unconvertible types).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/ember.h"
#include "engine/quantize.h"
#include "tests/model-edit.h"
#include "tests/prompt-logits.h"

namespace {

using ember::DType;

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";
using ember_test::max_abs_diff;
using ember_test::prompt_logits;
const std::string kModelF16 = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K-f16.gguf";

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

uint64_t file_hash(const std::string& path) {  // FNV-1a over the bytes
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : slurp(path)) h = (h ^ c) * 1099511628211ull;
    return h;
}

bool exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

void copy_file(const std::string& from, const std::string& to) {
    std::ofstream(to, std::ios::binary) << slurp(from);
}

ember::QuantizeParams params(DType t, int n_threads = 2) {
    ember::QuantizeParams p;
    p.type = t;
    p.n_threads = n_threads;
    return p;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const ember::Error& e) {
        return e.what();
    }
    return "";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

bool same_value(const ember::GGUFValue& a, const ember::GGUFValue& b) {
    using T = ember::GGUFType;
    if (a.type != b.type) return false;
    switch (a.type) {
        case T::GGUF_TYPE_UINT8:
        case T::GGUF_TYPE_UINT16:
        case T::GGUF_TYPE_UINT32:
        case T::GGUF_TYPE_UINT64: return a.u == b.u;
        case T::GGUF_TYPE_INT8:
        case T::GGUF_TYPE_INT16:
        case T::GGUF_TYPE_INT32:
        case T::GGUF_TYPE_INT64: return a.i == b.i;
        case T::GGUF_TYPE_FLOAT32:
        case T::GGUF_TYPE_FLOAT64: return std::memcmp(&a.f, &b.f, sizeof a.f) == 0;
        case T::GGUF_TYPE_BOOL: return a.b == b.b;
        case T::GGUF_TYPE_STRING: return a.s == b.s;
        case T::GGUF_TYPE_ARRAY:
            if (a.elem_type != b.elem_type || a.arr.size() != b.arr.size()) return false;
            for (size_t k = 0; k < a.arr.size(); k++)
                if (!same_value(a.arr[k], b.arr[k])) return false;
            return true;
    }
    return false;
}

// Row r of tensor t in float.
std::vector<float> row_of(const ember::GGUFTensorInfo& t, int64_t r) {
    const int64_t n = t.ne[0];
    const size_t bytes = ember::dtype_row_bytes((DType)t.type, n);
    std::vector<float> x(n);
    ember::dequantize_row((DType)t.type, (const uint8_t*)t.data + bytes * r, x.data(), n);
    return x;
}

// The type stories260K's tensor gets under each target (see engine/quantize.h).
uint32_t expected_type(const ember::GGUFTensorInfo& t, DType target) {
    if (t.n_dims < 2) return t.type;  // norms stay as they are (F32 in both test files)
    DType want = target;
    if (t.name == "output.weight" && target == DType::DTYPE_Q4_0) want = DType::DTYPE_Q8_0;
    if (t.ne[0] % ember::dtype_block_elems(want) != 0) want = DType::DTYPE_F16;  // ffn_down: 172 columns
    return (uint32_t)want;
}

struct BlockStats {
    double max_ratio = 0;  // max over blocks of (max |error| in the block) / |scale|
};

// Checks the written tensor q against the original o within q's dtype bound; Q8_0/Q4_0 blocks are decoded here
// from their bytes, independently of dequantize_row.
void check_values(const ember::GGUFTensorInfo& o, const ember::GGUFTensorInfo& q, BlockStats& st) {
    const int64_t n = o.ne[0], rows = o.n_elements() / n;
    const DType t = (DType)q.type;
    if (q.type == o.type) {
        ASSERT_EQ(q.n_bytes, o.n_bytes);
        EXPECT_EQ(std::memcmp(q.data, o.data, o.n_bytes), 0) << q.name << " should be copied byte for byte";
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        const std::vector<float> x = row_of(o, r);
        if (t == DType::DTYPE_Q8_0 || t == DType::DTYPE_Q4_0) {
            const size_t bb = ember::dtype_block_bytes(t);
            const uint8_t* row = (const uint8_t*)q.data + ember::dtype_row_bytes(t, n) * r;
            for (int64_t b = 0; b < n / 32; b++) {
                const uint8_t* blk = row + bb * b;
                uint16_t dh;
                std::memcpy(&dh, blk, 2);
                const float d = ember::fp16_to_f32(dh);
                double err = 0;
                for (int j = 0; j < 32; j++) {
                    float y;
                    if (t == DType::DTYPE_Q8_0) {
                        y = d * (float)(int8_t)blk[2 + j];
                    } else {
                        const uint8_t byte = blk[2 + (j % 16)];
                        y = d * (float)((j < 16 ? byte & 15 : byte >> 4) - 8);
                    }
                    err = std::max(err, (double)std::fabs(y - x[b * 32 + j]));
                }
                // Rounding to the nearest step is d/2 (Q8_0); Q4_0's asymmetric range costs up to d at -max.
                // The scale itself is stored as F16 (relative error 2^-11), which moves the largest code's value
                // (127 for Q8_0, 8 for Q4_0) by that much more.
                const double ad = std::fabs((double)d);
                const double bound = t == DType::DTYPE_Q8_0 ? ad * (0.5 + 127.0 / 2048) : ad * (1.0 + 8.0 / 2048);
                ASSERT_LE(err, bound * (1 + 1e-6) + 1e-12) << q.name << " row " << r << " block " << b;
                if (ad > 0) st.max_ratio = std::max(st.max_ratio, err / ad);
            }
            continue;
        }
        const std::vector<float> y = row_of(q, r);
        for (int64_t i = 0; i < n; i++) {
            const double a = y[i], e = x[i];
            switch (t) {
                case DType::DTYPE_F32: ASSERT_EQ(a, e) << q.name; break;
                case DType::DTYPE_F16: ASSERT_LE(std::fabs(a - e), 1e-3 * std::fabs(e) + 1e-7) << q.name; break;
                case DType::DTYPE_BF16: ASSERT_LE(std::fabs(a - e), 1e-2 * std::fabs(e)) << q.name; break;
                default: FAIL() << q.name << ": unexpected type " << ember::dtype_name(t);
            }
        }
    }
}

TEST(QuantizeTarget, ParsesNamesInAnyCaseAndFtypeIds) {
    EXPECT_EQ(ember::quantize_parse_target("q4_0").type, DType::DTYPE_Q4_0);
    EXPECT_EQ(ember::quantize_parse_target("Q8_0").type, DType::DTYPE_Q8_0);
    EXPECT_EQ(ember::quantize_parse_target("bf16").type, DType::DTYPE_BF16);
    EXPECT_EQ(ember::quantize_parse_target("F16").type, DType::DTYPE_F16);
    EXPECT_EQ(ember::quantize_parse_target("f32").type, DType::DTYPE_F32);
    // llama.cpp's llama_ftype ids.
    EXPECT_EQ(ember::quantize_parse_target("0").type, DType::DTYPE_F32);
    EXPECT_EQ(ember::quantize_parse_target("1").type, DType::DTYPE_F16);
    EXPECT_EQ(ember::quantize_parse_target("2").type, DType::DTYPE_Q4_0);
    EXPECT_EQ(ember::quantize_parse_target("7").type, DType::DTYPE_Q8_0);
    EXPECT_EQ(ember::quantize_parse_target("32").type, DType::DTYPE_BF16);
    EXPECT_EQ(ember::quantize_parse_target("Q4_0").ftype, 2u);
    EXPECT_EQ(ember::quantize_parse_target("bf16").ftype, 32u);
}

TEST(QuantizeTarget, UnknownTypeListsTheValidOnes) {
    for (const char* bad : {"q5_k", "Q4_K_M", "3", "8", "", "q4", "Q4_0x", "-1"}) {
        const std::string msg = error_of([&] { ember::quantize_parse_target(bad); });
        EXPECT_TRUE(has(msg, std::string("'") + bad + "'")) << msg;
        for (const char* valid : {"F32 (0)", "F16 (1)", "BF16 (32)", "Q8_0 (7)", "Q4_0 (2)"})
            EXPECT_TRUE(has(msg, valid)) << msg;
    }
}

struct RoundTripCase {
    DType type;
    uint32_t ftype;
    std::string source;      // input model
    double max_logit_diff;   // against the F32 model
};

class QuantizeRoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(QuantizeRoundTrip, TypesKeysValuesAndLogits) {
    const RoundTripCase c = GetParam();
    const std::string out = ember_test::temp_path(std::string("rt-") + ember::dtype_name(c.type) + ".gguf");
    std::vector<std::string> lines;
    ember::QuantizeParams p = params(c.type);
    p.log = [&](const std::string& l) { lines.push_back(l); };
    const ember::QuantizeReport rep = ember::quantize_model(c.source, out, p);
    EXPECT_FALSE(exists(out + ".tmp"));

    auto src = ember::GGUFFile::open(c.source);
    auto dst = ember::GGUFFile::open(out);

    // Every key kept, in order, with general.file_type and general.quantization_version set.
    size_t k_src = 0;
    for (const auto& [key, value] : dst->metadata()) {
        if (key == "general.file_type") {
            EXPECT_EQ(value.type, ember::GGUFType::GGUF_TYPE_UINT32);
            EXPECT_EQ(value.u, c.ftype);
        } else if (key == "general.quantization_version") {
            EXPECT_EQ(value.u, 2u);
        } else {
            ASSERT_LT(k_src, src->metadata().size()) << "extra key " << key;
            while (k_src < src->metadata().size() &&
                   (src->metadata()[k_src].first == "general.file_type" ||
                    src->metadata()[k_src].first == "general.quantization_version"))
                k_src++;
            EXPECT_EQ(key, src->metadata()[k_src].first);
            EXPECT_TRUE(same_value(value, src->metadata()[k_src].second)) << key;
            k_src++;
        }
    }
    for (const auto& [key, value] : src->metadata()) EXPECT_TRUE(dst->has(key)) << "lost key " << key;
    EXPECT_EQ(dst->get_u32("general.file_type"), c.ftype);
    EXPECT_EQ(dst->get_u32("general.quantization_version"), 2u);

    // Tensors: same order, names and shapes; the expected type; values within the type's bound.
    ASSERT_EQ(dst->tensors().size(), src->tensors().size());
    ASSERT_EQ(rep.tensors.size(), src->tensors().size());
    BlockStats st;
    int n_fallback = 0;
    for (size_t i = 0; i < src->tensors().size(); i++) {
        const auto& o = src->tensors()[i];
        const auto& q = dst->tensors()[i];
        ASSERT_EQ(q.name, o.name);
        ASSERT_EQ(q.n_dims, o.n_dims) << q.name;
        for (int d = 0; d < 4; d++) EXPECT_EQ(q.ne[d], o.ne[d]) << q.name;
        EXPECT_EQ(q.type, expected_type(o, c.type)) << q.name << ": " << ember::gguf_ggml_type_name(q.type);
        EXPECT_EQ(rep.tensors[i].type_out, q.type) << q.name;
        EXPECT_EQ(rep.tensors[i].bytes_out, q.n_bytes) << q.name;
        n_fallback += rep.tensors[i].fallback;
        check_values(o, q, st);
    }
    EXPECT_EQ(rep.n_fallback, n_fallback);
    const bool quantized = c.type == DType::DTYPE_Q8_0 || c.type == DType::DTYPE_Q4_0;
    EXPECT_EQ(n_fallback, quantized ? 5 : 0);  // the five ffn_down (172 columns)
    if (quantized)
        printf("[quantize] %s: max |error| / |scale| over all blocks = %.4f\n", ember::dtype_name(c.type),
               st.max_ratio);

    // One progress line per tensor, plus the summary.
    size_t n_tensor_lines = 0;
    for (const std::string& l : lines) n_tensor_lines += l.rfind("[", 0) == 0;
    EXPECT_EQ(n_tensor_lines, src->tensors().size());
    bool summary = false;
    for (const std::string& l : lines) summary |= has(l, "quant size");
    EXPECT_TRUE(summary);

    // The quantized model loads and its logits stay near the F32 model's.
    const double err = max_abs_diff(prompt_logits(out, 2, false), prompt_logits(kModel, 2, false));
    printf("[quantize] %s from %s: max |logit - F32 logit| = %.4g (bound %.3g)\n", ember::dtype_name(c.type),
           c.source == kModel ? "F32" : "F16", err, c.max_logit_diff);
    EXPECT_LT(err, c.max_logit_diff);
    std::remove(out.c_str());
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, QuantizeRoundTrip,
    ::testing::Values(RoundTripCase{DType::DTYPE_F16, 1, kModel, 0.03},
                      RoundTripCase{DType::DTYPE_BF16, 32, kModel, 0.2},
                      RoundTripCase{DType::DTYPE_Q8_0, 7, kModel, 0.5},
                      RoundTripCase{DType::DTYPE_Q4_0, 2, kModel, 8.0},
                      // F32 from llama.cpp's F16 file: exact values, so only F16's own rounding against F32.
                      RoundTripCase{DType::DTYPE_F32, 0, kModelF16, 0.03}),
    [](const auto& info) { return std::string(ember::dtype_name(info.param.type)); });

TEST(Quantize, Q8_0BytesEqualDirectQuantizeRow) {
    const std::string out = ember_test::temp_path("direct-q8.gguf");
    ember::quantize_model(kModel, out, params(DType::DTYPE_Q8_0, 3));
    auto src = ember::GGUFFile::open(kModel);
    auto dst = ember::GGUFFile::open(out);
    int n_q8 = 0;
    for (const auto& q : dst->tensors()) {
        if (q.type != (uint32_t)DType::DTYPE_Q8_0) continue;
        n_q8++;
        const auto* o = src->find_tensor(q.name);
        ASSERT_NE(o, nullptr);
        const int64_t n = o->ne[0], rows = o->n_elements() / n;
        std::vector<uint8_t> expect(ember::dtype_row_bytes(DType::DTYPE_Q8_0, n) * rows);
        for (int64_t r = 0; r < rows; r++)
            ember::quantize_row(DType::DTYPE_Q8_0, (const float*)o->data + n * r,
                                expect.data() + ember::dtype_row_bytes(DType::DTYPE_Q8_0, n) * r, n);
        ASSERT_EQ(q.n_bytes, expect.size());
        EXPECT_EQ(std::memcmp(q.data, expect.data(), expect.size()), 0) << q.name;
    }
    EXPECT_EQ(n_q8, 2 + 5 * 6);  // token_embd, output, and q, k, v, o, gate, up of five layers
    std::remove(out.c_str());
}

TEST(Quantize, ThreadCountDoesNotChangeTheBytes) {
    const std::string a = ember_test::temp_path("t1.gguf"), b = ember_test::temp_path("t3.gguf");
    ember::quantize_model(kModel, a, params(DType::DTYPE_Q4_0, 1));
    ember::quantize_model(kModel, b, params(DType::DTYPE_Q4_0, 3));
    EXPECT_TRUE(slurp(a) == slurp(b));
    std::remove(a.c_str());
    std::remove(b.c_str());
}

TEST(Quantize, OutputTensorRules) {
    auto src = ember::GGUFFile::open(kModel);
    auto type_of = [](const ember::QuantizeReport& r, const std::string& name) {
        for (const auto& t : r.tensors)
            if (t.name == name) return t.type_out;
        return ~0u;
    };
    // Q4_0: output.weight at Q8_0 (llama.cpp: Q6_K, which ember lacks), token_embd.weight at Q4_0.
    auto r = ember::quantize_plan(*src, params(DType::DTYPE_Q4_0));
    EXPECT_EQ(type_of(r, "output.weight"), (uint32_t)DType::DTYPE_Q8_0);
    EXPECT_EQ(type_of(r, "token_embd.weight"), (uint32_t)DType::DTYPE_Q4_0);
    // Q8_0: output.weight at Q8_0 as everything else.
    r = ember::quantize_plan(*src, params(DType::DTYPE_Q8_0));
    EXPECT_EQ(type_of(r, "output.weight"), (uint32_t)DType::DTYPE_Q8_0);
    // --leave-output-tensor: output.weight copied in its input type.
    ember::QuantizeParams p = params(DType::DTYPE_Q4_0);
    p.leave_output_tensor = true;
    r = ember::quantize_plan(*src, p);
    EXPECT_EQ(type_of(r, "output.weight"), (uint32_t)DType::DTYPE_F32);
    EXPECT_EQ(type_of(r, "token_embd.weight"), (uint32_t)DType::DTYPE_Q4_0);

    // Tied embeddings (no output.weight): token_embd.weight is the output projection and gets its rule.
    ember_test::ModelEdit edit;
    edit.drop_tensors = {"output.weight"};
    const std::string tied = ember_test::temp_path("tied.gguf");
    ember_test::write_edited_copy(*src, tied, edit);
    auto tf = ember::GGUFFile::open(tied);
    r = ember::quantize_plan(*tf, params(DType::DTYPE_Q4_0));
    EXPECT_EQ(type_of(r, "token_embd.weight"), (uint32_t)DType::DTYPE_Q8_0);
    std::remove(tied.c_str());
}

TEST(Quantize, BF16SourceFallsBackToBF16) {
    auto src = ember::GGUFFile::open(kModel);
    ember_test::ModelEdit edit;
    edit.to = DType::DTYPE_BF16;
    edit.convert = [](const ember::GGUFTensorInfo& t) { return t.n_dims == 2; };
    const std::string bf = ember_test::temp_path("bf16-src.gguf");
    ember_test::write_edited_copy(*src, bf, edit);
    auto f = ember::GGUFFile::open(bf);
    const auto r = ember::quantize_plan(*f, params(DType::DTYPE_Q8_0));
    for (const auto& t : r.tensors)
        if (t.name.find("ffn_down") != std::string::npos) {
            EXPECT_TRUE(t.fallback);
            EXPECT_EQ(t.type_out, (uint32_t)DType::DTYPE_BF16);
            EXPECT_EQ(t.action, ember::QuantizeAction::QUANTIZE_ACTION_COPY);
        }
    std::remove(bf.c_str());
}

// IN == OUT, directly, through a symlink, a hard link, or OUT.tmp: refused before anything is written.
TEST(Quantize, RefusesToOverwriteTheInput) {
    const std::string in = ember_test::temp_path("in.gguf");
    copy_file(kModel, in);
    const uint64_t h = file_hash(in);
    const std::string link = ember_test::temp_path("link.gguf"), hard = ember_test::temp_path("hard.gguf");
    ASSERT_EQ(::symlink(in.c_str(), link.c_str()), 0);
    ASSERT_EQ(::link(in.c_str(), hard.c_str()), 0);
    for (const std::string& out : {in, link, hard}) {
        const std::string msg = error_of([&] { ember::quantize_model(in, out, params(DType::DTYPE_Q4_0)); });
        EXPECT_TRUE(has(msg, "is the input file")) << out << ": " << msg;
        EXPECT_TRUE(has(msg, out)) << msg;
        EXPECT_EQ(file_hash(in), h);
        EXPECT_FALSE(exists(out + ".tmp"));
    }
    // Input through the symlink, output the real path.
    EXPECT_TRUE(has(error_of([&] { ember::quantize_model(link, in, params(DType::DTYPE_Q8_0)); }), "is the input"));
    EXPECT_EQ(file_hash(in), h);
    char target[512] = {};
    ASSERT_GT(::readlink(link.c_str(), target, sizeof target - 1), 0);
    EXPECT_EQ(std::string(target), in);  // the link is still a link to IN

    // OUT.tmp (the writer's temporary) being IN would truncate IN while it is read.
    const std::string in_tmp = ember_test::temp_path("x.gguf.tmp"), out = ember_test::temp_path("x.gguf");
    copy_file(kModel, in_tmp);
    const std::string msg = error_of([&] { ember::quantize_model(in_tmp, out, params(DType::DTYPE_Q8_0)); });
    EXPECT_TRUE(has(msg, "which is the input file")) << msg;
    EXPECT_EQ(file_hash(in_tmp), h);
    EXPECT_FALSE(exists(out));
    for (const std::string& f : {in, link, hard, in_tmp}) std::remove(f.c_str());
}

TEST(Quantize, ReplacesAnotherExistingFileWhole) {
    const std::string out = ember_test::temp_path("existing.gguf");
    std::ofstream(out, std::ios::binary) << "not a model";
    ember::quantize_model(kModel, out, params(DType::DTYPE_Q8_0));
    auto f = ember::GGUFFile::open(out);
    EXPECT_EQ(f->get_u32("general.file_type"), 7u);
    EXPECT_FALSE(exists(out + ".tmp"));
    std::remove(out.c_str());
}

TEST(Quantize, RefusesToTruncateAnExistingTmpFile) {
    const std::string out = ember_test::temp_path("busy.gguf");
    std::ofstream(out + ".tmp", std::ios::binary) << "the user's notes";
    const std::string msg = error_of([&] { ember::quantize_model(kModel, out, params(DType::DTYPE_Q8_0)); });
    EXPECT_TRUE(has(msg, "'" + out + ".tmp' exists")) << msg;
    EXPECT_EQ(slurp(out + ".tmp"), "the user's notes");
    EXPECT_FALSE(exists(out));
    std::remove((out + ".tmp").c_str());
}

TEST(Quantize, UnreadableInputAndUnwritableOutputNameThePath) {
    const std::string missing = "/nonexistent/ember-model.gguf";
    std::string msg = error_of([&] { ember::quantize_model(missing, "/tmp/x.gguf", params(DType::DTYPE_Q8_0)); });
    EXPECT_TRUE(has(msg, missing)) << msg;
    const std::string out = "/nonexistent-dir/out.gguf";
    msg = error_of([&] { ember::quantize_model(kModel, out, params(DType::DTYPE_Q8_0)); });
    EXPECT_TRUE(has(msg, out)) << msg;
    const std::string dir = ember_test::temp_path("a-dir");
    ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
    msg = error_of([&] { ember::quantize_model(kModel, dir, params(DType::DTYPE_Q8_0)); });
    EXPECT_TRUE(has(msg, "not a regular file")) << msg;
    ::rmdir(dir.c_str());
}

TEST(Quantize, RequantizingNeedsTheFlag) {
    const std::string q8 = ember_test::temp_path("rq-q8.gguf"), q4 = ember_test::temp_path("rq-q4.gguf");
    ember::quantize_model(kModel, q8, params(DType::DTYPE_Q8_0));
    std::string msg = error_of([&] { ember::quantize_model(q8, q4, params(DType::DTYPE_Q4_0)); });
    EXPECT_TRUE(has(msg, "--allow-requantize")) << msg;
    EXPECT_TRUE(has(msg, "token_embd.weight")) << msg;
    EXPECT_TRUE(has(msg, q8)) << msg;
    EXPECT_FALSE(exists(q4));
    msg = error_of([&] { ember::quantize_model(q8, q4, params(DType::DTYPE_F16)); });
    EXPECT_TRUE(has(msg, "--allow-requantize")) << msg;

    // Same type: every tensor copied, no flag needed.
    const auto same = ember::quantize_model(q8, q4, params(DType::DTYPE_Q8_0));
    EXPECT_EQ(same.n_requantized, 0);
    for (const auto& t : same.tensors) EXPECT_EQ(t.action, ember::QuantizeAction::QUANTIZE_ACTION_COPY) << t.name;

    ember::QuantizeParams p = params(DType::DTYPE_Q4_0);
    p.allow_requantize = true;
    std::vector<std::string> lines;
    p.log = [&](const std::string& l) { lines.push_back(l); };
    const auto r = ember::quantize_model(q8, q4, p);
    EXPECT_EQ(r.n_requantized, 1 + 5 * 6);  // output.weight stays Q8_0, ffn_down stays F16
    bool warned = false;
    for (const std::string& l : lines) warned |= has(l, "WARNING: requantizing");
    EXPECT_TRUE(warned);
    const double err = max_abs_diff(prompt_logits(q4, 2, false), prompt_logits(kModel, 2, false));
    printf("[quantize] Q4_0 requantized from Q8_0: max |logit - F32 logit| = %.4g\n", err);
    EXPECT_LT(err, 8.0);
    std::remove(q8.c_str());
    std::remove(q4.c_str());
}

TEST(Quantize, UnconvertibleTensorTypeIsNamed) {
    auto src = ember::GGUFFile::open(kModel);
    ember_test::ModelEdit edit;
    edit.replace["blk.0.attn_q.weight"] = {{256, 16}, 12};  // Q4_K
    const std::string in = ember_test::temp_path("q4k.gguf"), out = ember_test::temp_path("q4k-out.gguf");
    ember_test::write_edited_copy(*src, in, edit);
    for (bool allow : {false, true}) {
        ember::QuantizeParams p = params(DType::DTYPE_Q8_0);
        p.allow_requantize = allow;
        const std::string msg = error_of([&] { ember::quantize_model(in, out, p); });
        EXPECT_TRUE(has(msg, "blk.0.attn_q.weight")) << msg;
        EXPECT_TRUE(has(msg, "q4_k")) << msg;
        EXPECT_TRUE(has(msg, in)) << msg;
        EXPECT_FALSE(exists(out));
    }
    std::remove(in.c_str());
}

TEST(Quantize, NonFiniteWeightsAreRefusedAndNothingIsWritten) {
    // A bare GGUF file: one 2-D weight with an inf, one whose values overflow F16.
    ember::GGUFWriter w;
    w.set_string("general.architecture", "llama");
    std::vector<float> a(64, 0.5f), b(64, 0.25f);
    a[37] = INFINITY;
    b[5] = 1e6f;  // beyond F16's 65504
    w.add_tensor("blk.0.attn_q.weight", 0, {32, 2}, a.data(), a.size() * 4);
    const std::string in = ember_test::temp_path("inf.gguf"), out = ember_test::temp_path("inf-out.gguf");
    w.write(in);
    std::string msg = error_of([&] { ember::quantize_model(in, out, params(DType::DTYPE_Q8_0)); });
    EXPECT_TRUE(has(msg, "blk.0.attn_q.weight") && has(msg, "row 1") && has(msg, "inf")) << msg;
    EXPECT_TRUE(has(msg, "nothing written to '" + out + "'")) << msg;
    EXPECT_FALSE(exists(out));
    EXPECT_FALSE(exists(out + ".tmp"));

    ember::GGUFWriter w2;
    w2.add_tensor("ffn_up.weight", 0, {32, 2}, b.data(), b.size() * 4);
    w2.write(in);
    msg = error_of([&] { ember::quantize_model(in, out, params(DType::DTYPE_F16)); });
    EXPECT_TRUE(has(msg, "ffn_up.weight") && has(msg, "does not fit f16")) << msg;
    EXPECT_FALSE(exists(out));
    std::remove(in.c_str());
}

TEST(Quantize, RefusesASplitShard) {
    auto src = ember::GGUFFile::open(kModel);
    ember_test::ModelEdit edit;
    edit.set_kv["split.count"] = ember_test::value_u32(3);
    const std::string in = ember_test::temp_path("shard.gguf");
    ember_test::write_edited_copy(*src, in, edit);
    const std::string msg = error_of([&] { ember::quantize_model(in, in + ".out", params(DType::DTYPE_Q8_0)); });
    EXPECT_TRUE(has(msg, "split.count") && has(msg, "3-file")) << msg;
    std::remove(in.c_str());
}

}  // namespace
