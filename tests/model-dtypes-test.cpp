// Every weight dtype through the whole model: stories260K's tensors converted by ember's quantizer and writer,
// logits bounded against the F32 model per dtype; and llama.cpp's own F16 conversion of the same model.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/ember.h"
#include "models/llama.h"
#include "tests/model-edit.h"
#include "tests/prompt-logits.h"

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";
const std::string kModelF16 = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K-f16.gguf";
using ember_test::max_abs_diff;
using ember_test::prompt_logits;

struct DtypeCase {
    ember::DType type;
    // Bound on |logit - logit of the same weights stored as F32|, token by token. Zero error is expected from
    // the weight decoding; Q8_0/Q4_0 rows also quantize the activation to Q8_0 (as llama.cpp does).
    double max_decode_err;
    // Bound on |logit - original F32 model's logit|: the dtype's own rounding of the weights, for orientation.
    double max_quant_err;
};

class ModelDtypes : public ::testing::TestWithParam<DtypeCase> {};

TEST_P(ModelDtypes, LogitsStayCloseToF32) {
    const DtypeCase c = GetParam();
    auto src = ember::GGUFFile::open(kModel);
    ember_test::ModelEdit edit;
    edit.to = c.type;
    // 2-D weights whose rows split into whole blocks; norms stay F32 as llama.cpp keeps them.
    edit.convert = [&](const ember::GGUFTensorInfo& t) {
        return t.n_dims == 2 && t.ne[0] % ember::dtype_block_elems(c.type) == 0;
    };
    const std::string path = ember_test::temp_path(std::string(ember::dtype_name(c.type)) + ".gguf");
    ember_test::write_edited_copy(*src, path, edit);
    edit.store_as_f32 = true;
    const std::string path_f32 = ember_test::temp_path(std::string(ember::dtype_name(c.type)) + "-as-f32.gguf");
    ember_test::write_edited_copy(*src, path_f32, edit);

    ember::ModelParams mp;
    mp.path = path;
    auto model = ember::Model::load(mp);
    // Weights are used in place from the mapping, not copied.
    const auto& f = model->file();
    const auto* wq = (const uint8_t*)model->llama().layers[0].wq.data;
    EXPECT_GE(wq, f.file_data());
    EXPECT_LT(wq, f.file_data() + f.file_size());
    EXPECT_EQ(model->llama().layers[0].wq.type, c.type);

    const auto original = prompt_logits(kModel, 2, true);
    const auto same_weights = prompt_logits(path_f32, 2, true);
    // Batched: weights are decoded to float and multiplied by float activations, so only float rounding differs.
    const double batched_err = max_abs_diff(prompt_logits(path, 2, true), same_weights);
    const double decode_err = max_abs_diff(prompt_logits(path, 2, false), same_weights);
    const double quant_err = max_abs_diff(prompt_logits(path, 2, false), original);
    printf("[dtypes] %s: vs the same weights in F32: batched %.3g, token by token %.3g (bound %.3g); "
           "vs the original F32 model %.3g (bound %.3g)\n",
           ember::dtype_name(c.type), batched_err, decode_err, c.max_decode_err, quant_err, c.max_quant_err);
    EXPECT_LT(batched_err, 1e-3);
    EXPECT_LT(decode_err, c.max_decode_err);
    EXPECT_LT(quant_err, c.max_quant_err);
    EXPECT_GT(quant_err, 0.0) << "bit-identical logits mean the conversion did nothing";
    std::remove(path.c_str());
    std::remove(path_f32.c_str());
}

INSTANTIATE_TEST_SUITE_P(AllTypes, ModelDtypes,
                         ::testing::Values(DtypeCase{ember::DType::DTYPE_F16, 1e-3, 0.03},
                                           DtypeCase{ember::DType::DTYPE_BF16, 1e-3, 0.2},
                                           DtypeCase{ember::DType::DTYPE_Q8_0, 0.3, 0.5},
                                           DtypeCase{ember::DType::DTYPE_Q4_0, 0.6, 8.0}),
                         [](const auto& info) { return std::string(ember::dtype_name(info.param.type)); });

// A file written by another implementation (llama.cpp's quantizer) reads and runs like ours.
TEST(ModelDtypes, LlamaCppF16FileMatchesF32) {
    const double err = max_abs_diff(prompt_logits(kModelF16, 2, true), prompt_logits(kModel, 2, true));
    printf("[dtypes] llama.cpp F16 file: max |logit - F32 logit| = %.4g\n", err);
    EXPECT_LT(err, 0.02);
}

}  // namespace
