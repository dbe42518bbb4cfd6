// GGUF v3 writer (ggml docs/gguf.md): header, metadata, tensor infos, padding, tensor data, each tensor padded
// to the alignment. Values and tensors are validated when added, so write() only fails on I/O or a fill callback.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/gguf.h"

namespace ember {
namespace {

constexpr int k_max_depth = 8;             // same nesting limit as the reader
constexpr size_t k_max_key_bytes = 65535;  // gguf.md: keys are at most 2^16-1 bytes
constexpr size_t k_max_name_bytes = 63;    // ggml's GGML_MAX_NAME is 64 including the NUL

GGUFValue scalar(GGUFType t) {
    GGUFValue v;
    v.type = t;
    return v;
}

// A value of type t holding v in `field` (u, i, f, b or s: the one GGUFValue reads for t).
template <class Field, class T>
GGUFValue scalar(GGUFType t, Field GGUFValue::*field, const T& v) {
    GGUFValue x = scalar(t);
    x.*field = v;
    return x;
}

// An array of `elem` values, each holding its element of v in `field`.
template <class Field, class T>
GGUFValue array(GGUFType elem, Field GGUFValue::*field, const std::vector<T>& v) {
    GGUFValue x = scalar(GGUFType::GGUF_TYPE_ARRAY);
    x.elem_type = elem;
    x.arr.reserve(v.size());
    for (const T& e : v) x.arr.push_back(scalar(elem, field, e));
    return x;
}

// Throws unless v is writable as its type says: known types, arrays of one element type, integers in range.
void check_value(const std::string& key, const GGUFValue& v, int depth) {
    auto fail = [&](const std::string& msg) { throw Error("GGUFWriter: key '" + key + "': " + msg); };
    auto below = [&](uint64_t max) {
        if (v.u > max) fail("value " + std::to_string(v.u) + " does not fit " + gguf_type_name(v.type));
    };
    auto within = [&](int64_t lo, int64_t hi) {
        if (v.i < lo || v.i > hi) fail("value " + std::to_string(v.i) + " does not fit " + gguf_type_name(v.type));
    };
    switch (v.type) {
        case GGUFType::GGUF_TYPE_UINT8: return below(UINT8_MAX);
        case GGUFType::GGUF_TYPE_UINT16: return below(UINT16_MAX);
        case GGUFType::GGUF_TYPE_UINT32: return below(UINT32_MAX);
        case GGUFType::GGUF_TYPE_INT8: return within(INT8_MIN, INT8_MAX);
        case GGUFType::GGUF_TYPE_INT16: return within(INT16_MIN, INT16_MAX);
        case GGUFType::GGUF_TYPE_INT32: return within(INT32_MIN, INT32_MAX);
        case GGUFType::GGUF_TYPE_UINT64:
        case GGUFType::GGUF_TYPE_INT64:
        case GGUFType::GGUF_TYPE_FLOAT32:
        case GGUFType::GGUF_TYPE_FLOAT64:
        case GGUFType::GGUF_TYPE_BOOL:
        case GGUFType::GGUF_TYPE_STRING: return;
        case GGUFType::GGUF_TYPE_ARRAY:
            if (depth >= k_max_depth) fail("arrays nested deeper than " + std::to_string(k_max_depth) + " levels");
            if (uint32_t(v.elem_type) > uint32_t(GGUFType::GGUF_TYPE_FLOAT64))
                fail("unknown array element type " + std::to_string(uint32_t(v.elem_type)));
            for (size_t k = 0; k < v.arr.size(); k++) {
                if (v.arr[k].type != v.elem_type)
                    fail("array of " + std::string(gguf_type_name(v.elem_type)) + ": element " + std::to_string(k) +
                         " is " + gguf_type_name(v.arr[k].type));
                check_value(key, v.arr[k], depth + 1);
            }
            return;
    }
    fail("unknown value type " + std::to_string(uint32_t(v.type)));
}

// Buffered output that counts bytes, so padding is computed from the absolute file position.
class Out {
public:
    Out(FILE* f, const std::string& path) : f_(f), path_(path) {}
    void bytes(const void* p, size_t n) {
        if (n && std::fwrite(p, 1, n, f_) != n)
            throw Error(path_ + ": write of " + std::to_string(n) + " bytes at offset " + std::to_string(pos_) +
                        " failed: " + std::strerror(errno));
        pos_ += n;
    }
    template <class T>
    void put(T v) {
        bytes(&v, sizeof v);
    }
    void str(const std::string& s) {
        put<uint64_t>(s.size());
        bytes(s.data(), s.size());
    }
    void pad(uint64_t alignment) {
        static const uint8_t zeros[256] = {};
        for (uint64_t n = (alignment - pos_ % alignment) % alignment; n;) {
            uint64_t k = std::min<uint64_t>(n, sizeof zeros);
            bytes(zeros, k);
            n -= k;
        }
    }
    void value(const GGUFValue& v) {
        switch (v.type) {
            case GGUFType::GGUF_TYPE_UINT8: put(uint8_t(v.u)); break;
            case GGUFType::GGUF_TYPE_INT8: put(int8_t(v.i)); break;
            case GGUFType::GGUF_TYPE_UINT16: put(uint16_t(v.u)); break;
            case GGUFType::GGUF_TYPE_INT16: put(int16_t(v.i)); break;
            case GGUFType::GGUF_TYPE_UINT32: put(uint32_t(v.u)); break;
            case GGUFType::GGUF_TYPE_INT32: put(int32_t(v.i)); break;
            case GGUFType::GGUF_TYPE_UINT64: put(uint64_t(v.u)); break;
            case GGUFType::GGUF_TYPE_INT64: put(int64_t(v.i)); break;
            case GGUFType::GGUF_TYPE_FLOAT32: put(float(v.f)); break;
            case GGUFType::GGUF_TYPE_FLOAT64: put(double(v.f)); break;
            case GGUFType::GGUF_TYPE_BOOL: put(uint8_t(v.b ? 1 : 0)); break;
            case GGUFType::GGUF_TYPE_STRING: str(v.s); break;
            case GGUFType::GGUF_TYPE_ARRAY:
                put(uint32_t(v.elem_type));
                put(uint64_t(v.arr.size()));
                for (const auto& e : v.arr) value(e);
                break;
        }
    }
    uint64_t pos() const { return pos_; }

private:
    FILE* f_;
    const std::string& path_;
    uint64_t pos_ = 0;
};

}  // namespace

void GGUFWriter::set_value(const std::string& key, const GGUFValue& v) {
    if (key.empty() || key.size() > k_max_key_bytes)
        throw Error("GGUFWriter: key length " + std::to_string(key.size()) + " is not in 1.." +
                    std::to_string(k_max_key_bytes));
    check_value(key, v, 0);
    if (key == "general.alignment") {  // keep the layout and the stored key in agreement
        if (v.type != GGUFType::GGUF_TYPE_UINT32)
            throw Error(std::string("GGUFWriter: key 'general.alignment': expected UINT32, found ") +
                        gguf_type_name(v.type));
        if (v.u == 0 || (v.u & (v.u - 1)) != 0)
            throw Error("GGUFWriter: key 'general.alignment': expected a nonzero power of two, found " +
                        std::to_string(v.u));
        alignment_ = uint32_t(v.u);
    }
    for (auto& kv : kv_)
        if (kv.first == key) {  // setting a key again replaces its value in place
            kv.second = v;
            return;
        }
    kv_.emplace_back(key, v);
}

void GGUFWriter::set_u32(const std::string& key, uint32_t v) {
    set_value(key, scalar(GGUFType::GGUF_TYPE_UINT32, &GGUFValue::u, v));
}
void GGUFWriter::set_i32(const std::string& key, int32_t v) {
    set_value(key, scalar(GGUFType::GGUF_TYPE_INT32, &GGUFValue::i, v));
}
void GGUFWriter::set_u64(const std::string& key, uint64_t v) {
    set_value(key, scalar(GGUFType::GGUF_TYPE_UINT64, &GGUFValue::u, v));
}
void GGUFWriter::set_f32(const std::string& key, float v) {
    set_value(key, scalar(GGUFType::GGUF_TYPE_FLOAT32, &GGUFValue::f, v));
}
void GGUFWriter::set_bool(const std::string& key, bool v) {
    set_value(key, scalar(GGUFType::GGUF_TYPE_BOOL, &GGUFValue::b, v));
}
void GGUFWriter::set_string(const std::string& key, const std::string& v) {
    set_value(key, scalar(GGUFType::GGUF_TYPE_STRING, &GGUFValue::s, v));
}
void GGUFWriter::set_string_array(const std::string& key, const std::vector<std::string>& v) {
    set_value(key, array(GGUFType::GGUF_TYPE_STRING, &GGUFValue::s, v));
}
void GGUFWriter::set_f32_array(const std::string& key, const std::vector<float>& v) {
    set_value(key, array(GGUFType::GGUF_TYPE_FLOAT32, &GGUFValue::f, v));
}
void GGUFWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
    set_value(key, array(GGUFType::GGUF_TYPE_INT32, &GGUFValue::i, v));
}

void GGUFWriter::set_alignment(uint32_t alignment) { set_u32("general.alignment", alignment); }

void GGUFWriter::add_tensor(const std::string& name, uint32_t ggml_type, const std::vector<int64_t>& ne,
                            const void* data, size_t n_bytes) {
    if (!data && n_bytes)
        throw Error("GGUFWriter: tensor '" + name + "': null data for " + std::to_string(n_bytes) + " bytes");
    add_tensor_generated(name, ggml_type, ne, n_bytes, nullptr);
    tensors_.back().data.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + n_bytes);
}

void GGUFWriter::add_tensor_generated(const std::string& name, uint32_t ggml_type, const std::vector<int64_t>& ne,
                                      size_t n_bytes, std::function<void(uint8_t* dst)> fill) {
    std::string where = "GGUFWriter: tensor '" + name + "': ";
    if (name.empty() || name.size() > k_max_name_bytes)
        throw Error(where + "name length " + std::to_string(name.size()) + " is not in 1.." +
                    std::to_string(k_max_name_bytes) + " (ggml's limit)");
    for (const auto& t : tensors_)
        if (t.name == name) throw Error(where + "added twice");
    if (ne.empty() || ne.size() > 4) throw Error(where + "n_dims must be 1..4, found " + std::to_string(ne.size()));
    uint64_t bb, be;
    if (!gguf_type_block(ggml_type, &bb, &be))
        throw Error(where + "unknown or retired ggml type " + std::to_string(ggml_type) + " (" +
                    gguf_ggml_type_name(ggml_type) + ")");
    uint64_t n_elem = 1;
    for (size_t d = 0; d < ne.size(); d++) {
        if (ne[d] < 0) throw Error(where + "ne[" + std::to_string(d) + "] = " + std::to_string(ne[d]) + " is negative");
        if (__builtin_mul_overflow(n_elem, uint64_t(ne[d]), &n_elem) || n_elem > uint64_t(INT64_MAX))
            throw Error(where + "element count overflows int64");
    }
    if (uint64_t(ne[0]) % be != 0)
        throw Error(where + "ne[0] = " + std::to_string(ne[0]) + " is not a multiple of the " +
                    gguf_ggml_type_name(ggml_type) + " block size (" + std::to_string(be) + ")");
    unsigned __int128 expect = (unsigned __int128)(n_elem / be) * bb;
    if (expect != n_bytes)
        throw Error(where + std::to_string(n_elem) + " elements of " + gguf_ggml_type_name(ggml_type) + " take " +
                    (expect > UINT64_MAX ? std::string("more than 2^64") : std::to_string(uint64_t(expect))) +
                    " bytes, found " + std::to_string(n_bytes));
    tensors_.push_back(Tensor{name, ggml_type, ne, n_bytes, {}, std::move(fill)});
}

void GGUFWriter::write(const std::string& path) const {
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw Error(tmp + ": cannot create: " + std::strerror(errno));
    try {
        Out out(f, tmp);
        out.bytes("GGUF", 4);
        out.put<uint32_t>(3);
        out.put<uint64_t>(tensors_.size());
        out.put<uint64_t>(kv_.size());
        for (const auto& kv : kv_) {
            out.str(kv.first);
            out.put(uint32_t(kv.second.type));
            out.value(kv.second);
        }
        // Tensor infos; offsets are relative to the data section, each one aligned (gguf.md).
        uint64_t offset = 0;
        for (const auto& t : tensors_) {
            out.str(t.name);
            out.put<uint32_t>(uint32_t(t.ne.size()));
            for (int64_t n : t.ne) out.put<uint64_t>(uint64_t(n));
            out.put<uint32_t>(t.type);
            out.put<uint64_t>(offset);
            offset = (offset + t.n_bytes + alignment_ - 1) / alignment_ * alignment_;
        }
        out.pad(alignment_);
        for (const auto& t : tensors_) {
            if (t.fill) {  // one tensor's bytes in memory at a time
                std::vector<uint8_t> buf(t.n_bytes);
                t.fill(buf.data());
                out.bytes(buf.data(), buf.size());
            } else {
                out.bytes(t.data.data(), t.data.size());
            }
            out.pad(alignment_);
        }
        if (std::fflush(f) != 0 || fsync(fileno(f)) != 0)
            throw Error(tmp + ": flush after " + std::to_string(out.pos()) + " bytes failed: " + std::strerror(errno));
        FILE* done = f;
        f = nullptr;
        if (std::fclose(done) != 0) throw Error(tmp + ": close failed: " + std::strerror(errno));
        if (std::rename(tmp.c_str(), path.c_str()) != 0)
            throw Error(tmp + ": rename to " + path + " failed: " + std::strerror(errno));
    } catch (...) {
        if (f) std::fclose(f);
        std::remove(tmp.c_str());
        throw;
    }
}

}  // namespace ember
