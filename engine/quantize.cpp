// Model quantization: the per-tensor plan (llama-quantize's choice of output type), then a streamed write in which
// each tensor's rows are converted across the thread pool while the writer asks for that tensor's bytes.
#include "engine/quantize.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "engine/cpu-info.h"
#include "kernels-cpu/quant.h"
#include "kernels-cpu/thread-pool.h"

namespace ember {
namespace {

constexpr uint32_t k_quantization_version = 2;  // ggml's GGML_QNT_VERSION: the Q4_0/Q8_0 block layouts in use
constexpr int64_t k_min_chunk_elems = 16384;     // rows per thread-pool chunk cover at least this many elements

std::string lower(std::string s) {
    for (char& c : s) c = (char)std::tolower((unsigned char)c);
    return s;
}

std::string upper(std::string s) {
    for (char& c : s) c = (char)std::toupper((unsigned char)c);
    return s;
}

// ggml_type name as llama-quantize prints it ("f32", "q4_0", "q4_k").
std::string type_name(uint32_t t) { return lower(gguf_ggml_type_name(t)); }

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// Dimensions up to the last one above 1, as ggml_n_dims counts them: a (64, 1) tensor is 1-D.
int effective_dims(const GGUFTensorInfo& t) {
    int n = 1;
    for (int d = 1; d < (int)t.n_dims; d++)
        if (t.ne[d] > 1) n = d + 1;
    return n;
}

// Why llama-quantize leaves this tensor in its input type, or "" when it quantizes it (tensor_allows_quantization
// in llama.cpp's src/llama-quant.cpp, restricted to the tensor names of the architectures GGUF carries for LLMs).
std::string keep_reason(const GGUFTensorInfo& t, const QuantizeParams& p) {
    const std::string& n = t.name;
    if (effective_dims(t) < 2) return "1-D tensor";
    if (!ends_with(n, "weight")) return "not a weight";
    if (contains(n, "_norm.weight")) return "norm";
    if (n == "output.weight" && p.leave_output_tensor) return "--leave-output-tensor";
    if (contains(n, "ffn_gate_inp.weight")) return "expert router";
    if (n == "position_embd.weight" || n == "token_types.weight") return "position/token-type embedding";
    if (contains(n, "ssm_conv1d") || contains(n, "attn_rel_b.weight")) return "small tensor";
    return "";
}

const QuantizeTarget& target_of(DType t) {
    for (const QuantizeTarget& q : quantize_targets())
        if (q.type == t) return q;
    throw Error("quantize: target type " + type_name((uint32_t)t) + " (ggml type " + std::to_string((uint32_t)t) +
                ") is not one ember-quantize writes (expected f32, f16, bf16, q8_0 or q4_0)");
}

bool is_quantized(uint32_t t) { return t == (uint32_t)DType::DTYPE_Q8_0 || t == (uint32_t)DType::DTYPE_Q4_0; }

// First element (or block) of a converted row that is not finite, or -1. Scales of Q8_0/Q4_0 blocks are F16.
int64_t first_non_finite(DType t, const uint8_t* row, int64_t n) {
    auto f16_bad = [](uint16_t h) { return (h & 0x7c00) == 0x7c00; };
    switch (t) {
        case DType::DTYPE_F32: {
            for (int64_t i = 0; i < n; i++) {
                float x;
                std::memcpy(&x, row + 4 * i, 4);
                if (!std::isfinite(x)) return i;
            }
            return -1;
        }
        case DType::DTYPE_F16:
        case DType::DTYPE_BF16: {
            const uint16_t mask = t == DType::DTYPE_F16 ? 0x7c00 : 0x7f80;
            for (int64_t i = 0; i < n; i++) {
                uint16_t h;
                std::memcpy(&h, row + 2 * i, 2);
                if ((h & mask) == mask) return i;
            }
            return -1;
        }
        case DType::DTYPE_Q8_0:
        case DType::DTYPE_Q4_0: {
            const size_t bb = dtype_block_bytes(t);
            const int64_t be = dtype_block_elems(t);
            for (int64_t b = 0; b < n / be; b++) {
                uint16_t d;
                std::memcpy(&d, row + bb * b, 2);  // d comes first in both block layouts
                if (f16_bad(d)) return b * be;
            }
            return -1;
        }
    }
    return -1;
}

// Converts tensor t's rows into dst as planned, spread over the pool.
void convert_tensor(const GGUFFile& in, const GGUFTensorInfo& t, const QuantizeTensor& q, uint8_t* dst,
                    ThreadPool& pool) {
    if (q.action == QuantizeAction::QUANTIZE_ACTION_COPY) {
        std::memcpy(dst, t.data, q.bytes_out);
        return;
    }
    const int64_t n = t.ne[0];
    if (n == 0 || t.n_elements() == 0) return;
    const int64_t rows = t.n_elements() / n;
    const DType from = (DType)q.type_in, to = (DType)q.type_out;
    const size_t in_row = dtype_row_bytes(from, n), out_row = dtype_row_bytes(to, n);
    const int64_t grain = std::max<int64_t>(1, k_min_chunk_elems / n);
    pool.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
        std::vector<float> x(n);  // one row in float: the source may not be 4-byte aligned (general.alignment)
        for (int64_t r = r0; r < r1; r++) {
            dequantize_row(from, (const uint8_t*)t.data + in_row * r, x.data(), n);
            for (int64_t i = 0; i < n; i++)
                if (!std::isfinite(x[i]))
                    throw Error(in.path() + ": tensor '" + t.name + "': row " + std::to_string(r) + ", column " +
                                std::to_string(i) + " holds " + (std::isnan(x[i]) ? "nan" : "inf") +
                                " (expected finite weights)");
            uint8_t* y = dst + out_row * r;
            quantize_row(to, x.data(), y, n);
            const int64_t bad = first_non_finite(to, y, n);
            if (bad >= 0)
                throw Error(in.path() + ": tensor '" + t.name + "': row " + std::to_string(r) + ", column " +
                            std::to_string(bad) + " does not fit " + dtype_name(to) + " (value " +
                            std::to_string(x[bad]) + " converts to inf)");
        }
    });
}

std::string mib(uint64_t bytes, int decimals) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%8.*f MiB", decimals, bytes / 1024.0 / 1024.0);
    return buf;
}

// "[   3/  48]           blk.0.attn_q.weight - [   64,    64,     1,     1], type =    f32, converting to q8_0 .."
std::string tensor_line(const QuantizeTensor& q, size_t i, size_t n) {
    int64_t ne[4] = {1, 1, 1, 1};
    for (size_t d = 0; d < q.ne.size() && d < 4; d++) ne[d] = q.ne[d];
    char head[256];
    std::snprintf(head, sizeof head, "[%4zu/%4zu] %36s - [%5lld, %5lld, %5lld, %5lld], type = %6s, ", i + 1, n,
                  q.name.c_str(), (long long)ne[0], (long long)ne[1], (long long)ne[2], (long long)ne[3],
                  type_name(q.type_in).c_str());
    std::string line = head;
    if (q.action == QuantizeAction::QUANTIZE_ACTION_COPY)
        return line + "size = " + mib(q.bytes_out, 3) + (q.why.empty() ? "" : " (" + q.why + ")");
    line += "converting to " + type_name(q.type_out);
    if (!q.why.empty()) line += " (" + q.why + ")";
    return line + " .. size = " + mib(q.bytes_in, 2) + " -> " + mib(q.bytes_out, 2);
}

// Throws when `path` names the same file as the input (st_in), through symlinks and hard links.
void refuse_input(const std::string& in, const struct stat& st_in, const std::string& out, const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 || st.st_dev != st_in.st_dev || st.st_ino != st_in.st_ino) return;
    if (path == out)
        throw Error("output '" + out + "' is the input file '" + in +
                    "' (same device and inode): refusing to overwrite the model being read; choose another output "
                    "path");
    throw Error("output '" + out + "' would be written through '" + path + "', which is the input file '" + in +
                "' (same device and inode): refusing to overwrite the model being read; choose another output path");
}

}  // namespace

const std::vector<QuantizeTarget>& quantize_targets() {
    static const std::vector<QuantizeTarget> targets = {
        {DType::DTYPE_Q4_0, 2, "Q4_0"}, {DType::DTYPE_Q8_0, 7, "Q8_0"}, {DType::DTYPE_F16, 1, "F16"},
        {DType::DTYPE_BF16, 32, "BF16"}, {DType::DTYPE_F32, 0, "F32"},
    };
    return targets;
}

QuantizeTarget quantize_parse_target(const std::string& s) {
    const std::string u = upper(s);
    const bool numeric = !u.empty() && u.size() <= 9 && std::all_of(u.begin(), u.end(), [](char c) {
        return c >= '0' && c <= '9';
    });
    for (const QuantizeTarget& t : quantize_targets())
        if (u == t.name || (numeric && (uint32_t)std::stoul(u) == t.ftype)) return t;
    std::string valid;
    for (const QuantizeTarget& t : quantize_targets())
        valid += (valid.empty() ? "" : ", ") + std::string(t.name) + " (" + std::to_string(t.ftype) + ")";
    throw Error("unknown quantization type '" + s + "' (expected one of " + valid +
                ", by name in any case or by llama.cpp's ftype id)");
}

QuantizeReport quantize_plan(const GGUFFile& in, const QuantizeParams& p) {
    QuantizeReport r;
    r.target = target_of(p.type);
    if (const GGUFValue* v = in.find("split.count"); v && v->u > 1)
        throw Error(in.path() + ": key 'split.count': the file is one shard of a " + std::to_string(v->u) +
                    "-file model (expected a single file; merge the shards first, e.g. llama-gguf-split --merge)");
    // Tied embeddings (no output.weight): token_embd.weight is also the output projection and follows its rule.
    const bool tied = in.find_tensor("output.weight") == nullptr;
    for (const GGUFTensorInfo& t : in.tensors()) {
        QuantizeTensor q;
        q.name = t.name;
        q.ne.assign(t.ne, t.ne + t.n_dims);
        q.type_in = t.type;
        q.bytes_in = t.n_bytes;
        q.why = keep_reason(t, p);
        if (!q.why.empty()) {
            q.type_out = t.type;
        } else {
            DType want = p.type;
            const bool output_like = t.name == "output.weight" || (tied && t.name == "token_embd.weight");
            if (output_like && p.type == DType::DTYPE_Q4_0) {
                want = DType::DTYPE_Q8_0;  // llama.cpp: Q6_K, or Q8_0 where rows are not 256-aligned
                q.why = "output tensor";
            }
            if (t.ne[0] % dtype_block_elems(want) != 0) {
                q.why = "fallback: row length " + std::to_string(t.ne[0]) + " is not a multiple of " +
                        std::to_string(dtype_block_elems(want)) + " (" + dtype_name(want) + "'s block)";
                want = t.type == (uint32_t)DType::DTYPE_BF16 ? DType::DTYPE_BF16 : DType::DTYPE_F16;
                q.fallback = true;
                r.n_fallback++;
            }
            q.type_out = (uint32_t)want;
        }
        if (q.type_out == q.type_in) {
            q.action = QuantizeAction::QUANTIZE_ACTION_COPY;
            q.bytes_out = q.bytes_in;
            if (q.why.empty()) q.why = "already " + type_name(q.type_in);
        } else {
            q.action = QuantizeAction::QUANTIZE_ACTION_CONVERT;
            if (!dtype_is_supported(q.type_in))
                throw Error(in.path() + ": tensor '" + t.name + "': type " + type_name(q.type_in) +
                            " cannot be converted to " + type_name(q.type_out) +
                            " (ember-quantize reads f32, f16, bf16, q8_0 and q4_0)");
            if (is_quantized(q.type_in)) {
                if (!p.allow_requantize)
                    throw Error(in.path() + ": tensor '" + t.name + "' is already " + type_name(q.type_in) +
                                ": requantizing to " + type_name(q.type_out) +
                                " is disabled (pass --allow-requantize; quality drops compared with quantizing "
                                "the F32/F16/BF16 model)");
                q.requantized = true;
                r.n_requantized++;
            }
            const int64_t rows = t.ne[0] ? t.n_elements() / t.ne[0] : 0;
            q.bytes_out = (uint64_t)rows * dtype_row_bytes((DType)q.type_out, t.ne[0]);
        }
        r.bytes_in += q.bytes_in;
        r.bytes_out += q.bytes_out;
        r.n_elements += (uint64_t)t.n_elements();
        r.tensors.push_back(std::move(q));
    }
    return r;
}

QuantizeReport quantize_model(const std::string& in_path, const std::string& out, const QuantizeParams& p) {
    auto log = [&](const std::string& line) {
        if (p.log) p.log(line);
    };
    std::unique_ptr<GGUFFile> in = GGUFFile::open(in_path);
    struct stat st_in;
    if (::stat(in_path.c_str(), &st_in) != 0)
        throw Error(in_path + ": cannot stat: " + std::strerror(errno));
    const std::string tmp = out + ".tmp";  // GGUFWriter::write's temporary
    refuse_input(in_path, st_in, out, out);
    refuse_input(in_path, st_in, out, tmp);
    struct stat st_out;
    if (::lstat(tmp.c_str(), &st_out) == 0)  // the writer would truncate it: it may be the user's file
        throw Error("'" + tmp + "' exists, and ember-quantize writes '" + out +
                    "' there before renaming it (expected no such file; remove it or choose another output path)");
    const bool replacing = ::stat(out.c_str(), &st_out) == 0;
    if (replacing && !S_ISREG(st_out.st_mode))
        throw Error("output '" + out + "' exists and is not a regular file (expected a file path)");

    QuantizeReport r = quantize_plan(*in, p);
    r.n_threads = p.n_threads > 0 ? p.n_threads : cpu_physical_cores();
    log("quantize: '" + in_path + "' -> '" + out + "' as " + r.target.name + " (ftype " +
        std::to_string(r.target.ftype) + "), " + std::to_string(r.tensors.size()) + " tensors, " +
        std::to_string(r.n_threads) + " threads");
    if (replacing) log("quantize: '" + out + "' exists: it is replaced once the new file is complete");
    if (r.n_requantized)
        log("quantize: WARNING: requantizing " + std::to_string(r.n_requantized) +
            " tensor(s) that are already quantized: quality is lower than quantizing from F32/F16/BF16");

    GGUFWriter w;
    for (const auto& [key, value] : in->metadata()) w.set_value(key, value);
    w.set_u32("general.quantization_version", k_quantization_version);
    w.set_u32("general.file_type", r.target.ftype);

    ThreadPool pool(r.n_threads);
    const size_t n = r.tensors.size();
    for (size_t i = 0; i < n; i++) {
        const QuantizeTensor& q = r.tensors[i];
        const GGUFTensorInfo& t = in->tensors()[i];
        w.add_tensor_generated(q.name, q.type_out, q.ne, q.bytes_out, [&, i](uint8_t* dst) {
            convert_tensor(*in, t, q, dst, pool);
            log(tensor_line(q, i, n));
        });
    }
    try {
        w.write(out);
    } catch (const Error& e) {
        throw Error(std::string(e.what()) +
                    (replacing ? " ('" + out + "' left as it was)" : " (nothing written to '" + out + "')"));
    }

    const double n_el = r.n_elements ? (double)r.n_elements : 1.0;
    char buf[160];
    std::snprintf(buf, sizeof buf, "quantize: model size  = %s (%.2f BPW)", mib(r.bytes_in, 2).c_str(),
                  r.bytes_in * 8.0 / n_el);
    log(buf);
    std::snprintf(buf, sizeof buf, "quantize: quant size  = %s (%.2f BPW)", mib(r.bytes_out, 2).c_str(),
                  r.bytes_out * 8.0 / n_el);
    log(buf);
    if (r.n_fallback)
        log("quantize: WARNING: " + std::to_string(r.n_fallback) + " of " + std::to_string(n) +
            " tensor(s) required fallback quantization (rows not a multiple of the block size)");
    return r;
}

}  // namespace ember
