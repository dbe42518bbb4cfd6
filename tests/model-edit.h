// Test helper: writes a copy of a GGUF model with edits (keys set or dropped, tensors dropped, converted to
// another dtype or replaced), through ember's own writer.
#pragma once
#include <cstdio>
#include <functional>
#include <gtest/gtest.h>
#include <map>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "engine/gguf.h"
#include "kernels-cpu/quant.h"

namespace ember_test {

struct ModelEdit {
    std::map<std::string, ember::GGUFValue> set_kv;
    std::set<std::string> drop_kv;
    std::set<std::string> drop_tensors;
    // Converts every tensor for which convert() returns true to dtype `to` (through float).
    std::function<bool(const ember::GGUFTensorInfo&)> convert;
    ember::DType to = ember::DType::DTYPE_F32;
    // With convert: store the converted values back as F32 (the weights the dtype represents, in float).
    bool store_as_f32 = false;
    // Replaces a tensor's shape and type (data zero-filled to the new size).
    std::map<std::string, std::pair<std::vector<int64_t>, uint32_t>> replace;
};

inline std::string temp_path(const std::string& name) {
    return (::testing::TempDir().empty() ? std::string("/tmp/") : ::testing::TempDir()) + "ember-" +
           std::to_string(::getpid()) + "-" + name;
}

inline void write_edited_copy(const ember::GGUFFile& src, const std::string& out, const ModelEdit& e) {
    ember::GGUFWriter w;
    for (const auto& [key, value] : src.metadata())
        if (!e.drop_kv.count(key) && !e.set_kv.count(key) && key != "general.alignment") w.set_value(key, value);
    for (const auto& [key, value] : e.set_kv) w.set_value(key, value);
    for (const ember::GGUFTensorInfo& t : src.tensors()) {
        if (e.drop_tensors.count(t.name)) continue;
        std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
        auto rep = e.replace.find(t.name);
        if (rep != e.replace.end()) {
            uint64_t block_bytes = 0, block_elems = 1;
            ember::gguf_type_block(rep->second.second, &block_bytes, &block_elems);
            int64_t n = 1;
            for (int64_t d : rep->second.first) n *= d;
            std::vector<uint8_t> zero((size_t)(n / (int64_t)block_elems * (int64_t)block_bytes), 0);
            w.add_tensor(t.name, rep->second.second, rep->second.first, zero.data(), zero.size());
        } else if (e.convert && e.convert(t)) {
            const int64_t n_rows = t.n_elements() / t.ne[0];
            std::vector<float> row(t.ne[0]);
            const ember::DType stored = e.store_as_f32 ? ember::DType::DTYPE_F32 : e.to;
            const size_t q_row = ember::dtype_row_bytes(e.to, t.ne[0]);
            const size_t out_row = ember::dtype_row_bytes(stored, t.ne[0]);
            const size_t in_row = (size_t)t.n_bytes / (size_t)n_rows;
            std::vector<uint8_t> q(q_row), data(out_row * n_rows);
            for (int64_t r = 0; r < n_rows; r++) {
                ember::dequantize_row((ember::DType)t.type, (const uint8_t*)t.data + in_row * r, row.data(), t.ne[0]);
                if (e.store_as_f32) {
                    ember::quantize_row(e.to, row.data(), q.data(), t.ne[0]);
                    ember::dequantize_row(e.to, q.data(), (float*)(data.data() + out_row * r), t.ne[0]);
                } else {
                    ember::quantize_row(e.to, row.data(), data.data() + out_row * r, t.ne[0]);
                }
            }
            w.add_tensor(t.name, (uint32_t)stored, ne, data.data(), data.size());
        } else {
            w.add_tensor(t.name, t.type, ne, t.data, t.n_bytes);
        }
    }
    w.write(out);
}

inline ember::GGUFValue value_u32(uint32_t v) {
    ember::GGUFValue x;
    x.type = ember::GGUFType::GGUF_TYPE_UINT32;
    x.u = v;
    x.i = v;
    return x;
}

inline ember::GGUFValue value_string(const std::string& s) {
    ember::GGUFValue x;
    x.type = ember::GGUFType::GGUF_TYPE_STRING;
    x.s = s;
    return x;
}

}  // namespace ember_test
