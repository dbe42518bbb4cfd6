// GGUF v2/v3 reader over mmap (also PowerInfer's "PWRI" files) and writer.
// Spec: ggml's docs/gguf.md. Every structural error throws ember::Error naming the file, the byte offset,
// the key or tensor, what was expected and what was found.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"

namespace ember {

enum class GGUFType : uint32_t {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
};
const char* gguf_type_name(GGUFType t);

// One metadata value. Scalars: integers in i (signed) or u (unsigned), floats in f, bool in b.
// Arrays: elem_type and arr (nested arrays allowed).
struct GGUFValue {
    GGUFType type = GGUFType::GGUF_TYPE_UINT8;
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0;
    bool b = false;
    std::string s;
    GGUFType elem_type = GGUFType::GGUF_TYPE_UINT8;  // arrays only
    std::vector<GGUFValue> arr;                      // arrays only
};

struct GGUFTensorInfo {
    std::string name;
    uint32_t n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension, as in ggml
    uint32_t type = 0;             // ggml_type id (see kernels-cpu/dtype.h for the ones ember computes with)
    uint64_t offset = 0;           // relative to the start of the data section
    uint64_t n_bytes = 0;
    const void* data = nullptr;    // into the mapping
    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

// Bytes per block and elements per block of any ggml_type known to GGUF; false for unknown ids.
bool gguf_type_block(uint32_t ggml_type, uint64_t* block_bytes, uint64_t* block_elems);
const char* gguf_ggml_type_name(uint32_t ggml_type);

class GGUFFile {
public:
    // Maps the file read-only and parses and validates its header, metadata and tensor infos.
    static std::unique_ptr<GGUFFile> open(const std::string& path);
    // Parses a buffer (not copied; must outlive the object). `name` is used in error messages.
    static std::unique_ptr<GGUFFile> from_memory(const void* data, size_t size, const std::string& name);
    ~GGUFFile();
    GGUFFile(const GGUFFile&) = delete;
    GGUFFile& operator=(const GGUFFile&) = delete;

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    bool is_powerinfer() const { return powerinfer_; }  // magic was "PWRI"
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // file offset of the data section
    const uint8_t* file_data() const { return base_; }
    size_t file_size() const { return size_; }

    // Metadata, in file order.
    const std::vector<std::pair<std::string, GGUFValue>>& metadata() const { return kv_; }
    const GGUFValue* find(const std::string& key) const;  // nullptr when absent
    bool has(const std::string& key) const { return find(key) != nullptr; }

    // Typed getters: throw ember::Error naming the file and key when the key is absent or of the wrong type.
    // Integer getters accept any integer type whose value fits; float getters accept FLOAT32/FLOAT64.
    uint32_t get_u32(const std::string& key) const;
    uint32_t get_u32(const std::string& key, uint32_t fallback) const;  // fallback only when absent
    int32_t get_i32(const std::string& key) const;
    int32_t get_i32(const std::string& key, int32_t fallback) const;
    uint64_t get_u64(const std::string& key) const;
    float get_f32(const std::string& key) const;
    float get_f32(const std::string& key, float fallback) const;
    bool get_bool(const std::string& key, bool fallback) const;
    std::string get_string(const std::string& key) const;
    std::string get_string(const std::string& key, const std::string& fallback) const;
    std::vector<std::string> get_string_array(const std::string& key) const;
    std::vector<float> get_f32_array(const std::string& key) const;
    std::vector<int32_t> get_i32_array(const std::string& key) const;

    // Tensors, in file order.
    const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
    const GGUFTensorInfo* find_tensor(const std::string& name) const;  // nullptr when absent

private:
    GGUFFile() = default;
    void parse();
    [[noreturn]] void fail_key(const std::string& key, const std::string& msg) const;
    const GGUFValue& need(const std::string& key, const char* expected) const;
    const GGUFValue& need_array(const std::string& key, const char* expected) const;
    template <class T>
    T get_int(const std::string& key) const;

    std::string path_;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
    uint32_t version_ = 0;
    bool powerinfer_ = false;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, GGUFValue>> kv_;
    std::map<std::string, size_t> kv_index_;
    std::vector<size_t> kv_offset_;  // file offset of each key, for error messages
    std::vector<GGUFTensorInfo> tensors_;
    std::map<std::string, size_t> tensor_index_;
};

// Builds a GGUF v3 file in memory order and writes it atomically (to PATH.tmp, then rename).
class GGUFWriter {
public:
    void set_u32(const std::string& key, uint32_t v);
    void set_i32(const std::string& key, int32_t v);
    void set_u64(const std::string& key, uint64_t v);
    void set_f32(const std::string& key, float v);
    void set_bool(const std::string& key, bool v);
    void set_string(const std::string& key, const std::string& v);
    void set_string_array(const std::string& key, const std::vector<std::string>& v);
    void set_f32_array(const std::string& key, const std::vector<float>& v);
    void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
    void set_value(const std::string& key, const GGUFValue& v);  // any value, e.g. copied from a reader
    void set_alignment(uint32_t alignment);                      // also writes general.alignment

    // ne[0] is the row length. Data is copied. Size must equal the type's size for that shape.
    void add_tensor(const std::string& name, uint32_t ggml_type, const std::vector<int64_t>& ne,
                    const void* data, size_t n_bytes);

    // Same, but the bytes are produced at write time by fill(dst) into a buffer of n_bytes, so a writer of
    // large models never holds all tensors in memory at once.
    void add_tensor_generated(const std::string& name, uint32_t ggml_type, const std::vector<int64_t>& ne,
                              size_t n_bytes, std::function<void(uint8_t* dst)> fill);

    // Writes PATH.tmp then renames it over PATH, so an interrupted write never leaves a partial file under PATH.
    void write(const std::string& path) const;

private:
    std::vector<std::pair<std::string, GGUFValue>> kv_;
    struct Tensor {
        std::string name;
        uint32_t type;
        std::vector<int64_t> ne;
        size_t n_bytes;
        std::vector<uint8_t> data;                 // copied data, or empty when fill is set
        std::function<void(uint8_t* dst)> fill;    // generator, or empty
    };
    std::vector<Tensor> tensors_;
    uint32_t alignment_ = 32;
};

}  // namespace ember
