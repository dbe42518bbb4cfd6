// Model quantization (ember-quantize): converts a GGUF model's weights to F32, F16, BF16, Q8_0 or Q4_0 by
// llama.cpp's llama-quantize rules (src/llama-quant.cpp), one tensor in memory at a time, rows spread over threads.
// Rules, per tensor, in file order:
//   - kept as it is: tensors of fewer than 2 dimensions, names not ending in "weight", norms ("_norm.weight"),
//     MoE routers, position/token-type embeddings, and output.weight under leave_output_tensor;
//   - output.weight (token_embd.weight when there is no output.weight): Q8_0 when the target is Q4_0 (llama.cpp
//     uses Q6_K, which ember does not compute with; it falls back to Q8_0 itself when rows are not 256-aligned);
//   - a row length that is not a multiple of the target's block: F16 (BF16 when the source is BF16), reported;
//   - everything else: the target type. A tensor already of its output type is copied byte for byte.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/gguf.h"
#include "kernels-cpu/dtype.h"

namespace ember {

// One output type: its tensor type and llama.cpp's llama_ftype id (written to general.file_type).
struct QuantizeTarget {
    DType type;
    uint32_t ftype;    // LLAMA_FTYPE_ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7, MOSTLY_BF16 32
    const char* name;  // "Q4_0", as llama-quantize spells it
};

// The five targets, in llama-quantize's listing order.
const std::vector<QuantizeTarget>& quantize_targets();
// "q4_0", "Q4_0" or llama.cpp's ftype id "2" -> Q4_0. Throws Error listing the valid names and ids otherwise.
QuantizeTarget quantize_parse_target(const std::string& s);

struct QuantizeParams {
    DType type = DType::DTYPE_Q8_0;    // target weight type
    int n_threads = 0;                 // 0 = physical cores
    bool allow_requantize = false;     // also convert tensors already in Q8_0/Q4_0 (loses quality)
    bool leave_output_tensor = false;  // keep output.weight in its input type
    // Receives llama-quantize-style progress lines (no trailing newline): one per tensor, warnings, the summary.
    // Nothing is logged when empty.
    std::function<void(const std::string& line)> log;
};

// What happens to one tensor.
enum class QuantizeAction {
    QUANTIZE_ACTION_CONVERT,  // rows converted from type_in to type_out
    QUANTIZE_ACTION_COPY,     // bytes copied (type_out == type_in)
};

struct QuantizeTensor {
    std::string name;
    std::vector<int64_t> ne;  // ne[0] is the row length
    uint32_t type_in = 0;     // ggml_type ids
    uint32_t type_out = 0;
    QuantizeAction action = QuantizeAction::QUANTIZE_ACTION_COPY;
    bool fallback = false;    // type_out is F16/BF16 because rows do not split into the target's blocks
    bool requantized = false; // converted from Q8_0/Q4_0
    std::string why;          // why type_out, e.g. "1-D tensor", "row length 172 is not a multiple of 32"
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;
};

struct QuantizeReport {
    QuantizeTarget target{};
    std::vector<QuantizeTensor> tensors;  // in file order (the output's order)
    uint64_t bytes_in = 0;                // tensor data, before and after
    uint64_t bytes_out = 0;
    uint64_t n_elements = 0;
    int n_fallback = 0;
    int n_requantized = 0;
    int n_threads = 0;                    // threads used
};

// Decides every tensor's output type, writing nothing. Throws Error naming the tensor when one would need a
// conversion ember cannot do (its type is none of the five) or a requantization that was not allowed.
QuantizeReport quantize_plan(const GGUFFile& in, const QuantizeParams& params);

// Quantizes IN into OUT: every metadata key kept in order, general.file_type set to the target's ftype id and
// general.quantization_version to 2 (as llama-quantize does for every target), tensor order kept.
// OUT is written to OUT.tmp and renamed over OUT, so an existing OUT is replaced whole or not at all.
// Refuses (Error, nothing written) when OUT or OUT.tmp is the same file as IN (device and inode, so through
// symlinks and hard links too), and when OUT.tmp exists (it could be the user's); a failed write removes OUT.tmp
// and leaves OUT as it was.
QuantizeReport quantize_model(const std::string& in, const std::string& out, const QuantizeParams& params);

}  // namespace ember
