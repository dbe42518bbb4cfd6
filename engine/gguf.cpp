// GGUF reader: maps a file (or takes a caller's buffer) and validates everything before anything is allocated
// from its counts. Layout (ggml docs/gguf.md, "File Structure"): magic, version u32, n_tensors u64, n_kv u64;
// n_kv key/value pairs; n_tensors tensor infos; padding to ALIGNMENT; tensor data.
// Depends on headers only: the fuzzer compiles this file alone (tests/fuzz/).
#include "engine/gguf.h"

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>

namespace ember {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF fields are read with memcpy: little-endian hosts only");

namespace {

constexpr int k_max_depth = 8;                              // array nesting; real files use 1
constexpr uint64_t k_max_array_values = 1ull << 24;         // all array elements of a file; each costs a GGUFValue
constexpr uint64_t k_min_kv_bytes = 8 + 4 + 1;              // empty key, type, 1-byte value
constexpr uint64_t k_min_tensor_bytes = 8 + 4 + 8 + 4 + 8;  // empty name, n_dims, one ne, type, offset

struct GGMLTypeInfo {
    const char* name;
    uint32_t block_bytes;  // 0: id retired from GGUF files
    uint32_t block_elems;
};
// Indexed by ggml_type id. Sizes are sizeof(block_*) in ggml's ggml-common.h (QK_K = 256).
const GGMLTypeInfo k_ggml_types[] = {
    {"F32", 4, 1},      {"F16", 2, 1},        {"Q4_0", 18, 32},     {"Q4_1", 20, 32},     {"Q4_2", 0, 0},
    {"Q4_3", 0, 0},     {"Q5_0", 22, 32},     {"Q5_1", 24, 32},     {"Q8_0", 34, 32},     {"Q8_1", 36, 32},
    {"Q2_K", 84, 256},  {"Q3_K", 110, 256},   {"Q4_K", 144, 256},   {"Q5_K", 176, 256},   {"Q6_K", 210, 256},
    {"Q8_K", 292, 256}, {"IQ2_XXS", 66, 256}, {"IQ2_XS", 74, 256},  {"IQ3_XXS", 98, 256}, {"IQ1_S", 50, 256},
    {"IQ4_NL", 18, 32}, {"IQ3_S", 110, 256},  {"IQ2_S", 82, 256},   {"IQ4_XS", 136, 256}, {"I8", 1, 1},
    {"I16", 2, 1},      {"I32", 4, 1},        {"I64", 8, 1},        {"F64", 8, 1},        {"IQ1_M", 56, 256},
    {"BF16", 2, 1},     {"Q4_0_4_4", 0, 0},   {"Q4_0_4_8", 0, 0},   {"Q4_0_8_8", 0, 0},   {"TQ1_0", 54, 256},
    {"TQ2_0", 66, 256}, {"IQ4_NL_4_4", 0, 0}, {"IQ4_NL_4_8", 0, 0}, {"IQ4_NL_8_8", 0, 0}, {"MXFP4", 17, 32},
    {"NVFP4", 36, 64},  {"Q1_0", 18, 128},    {"Q2_0", 18, 64},
};
constexpr uint32_t k_n_ggml_types = sizeof(k_ggml_types) / sizeof(k_ggml_types[0]);

// Smallest encoding of one value of type t, to bound counts by the bytes left before allocating.
uint64_t min_value_bytes(uint32_t t) {
    switch (static_cast<GGUFType>(t)) {
        case GGUFType::GGUF_TYPE_UINT8:
        case GGUFType::GGUF_TYPE_INT8:
        case GGUFType::GGUF_TYPE_BOOL: return 1;
        case GGUFType::GGUF_TYPE_UINT16:
        case GGUFType::GGUF_TYPE_INT16: return 2;
        case GGUFType::GGUF_TYPE_UINT32:
        case GGUFType::GGUF_TYPE_INT32:
        case GGUFType::GGUF_TYPE_FLOAT32: return 4;
        case GGUFType::GGUF_TYPE_STRING: return 8;  // length only
        case GGUFType::GGUF_TYPE_ARRAY: return 12;  // element type + length
        default: return 8;
    }
}

bool is_signed(GGUFType t) {
    return t == GGUFType::GGUF_TYPE_INT8 || t == GGUFType::GGUF_TYPE_INT16 || t == GGUFType::GGUF_TYPE_INT32 ||
           t == GGUFType::GGUF_TYPE_INT64;
}
bool is_integer(GGUFType t) {
    return is_signed(t) || t == GGUFType::GGUF_TYPE_UINT8 || t == GGUFType::GGUF_TYPE_UINT16 ||
           t == GGUFType::GGUF_TYPE_UINT32 || t == GGUFType::GGUF_TYPE_UINT64;
}
std::string int_str(const GGUFValue& v) { return is_signed(v.type) ? std::to_string(v.i) : std::to_string(v.u); }
// Converts an integer value to T when it is in range.
template <class T>
bool int_to(const GGUFValue& v, T* out) {
    using L = std::numeric_limits<T>;
    if (!is_integer(v.type)) return false;
    if (is_signed(v.type)) {
        if (v.i < static_cast<int64_t>(L::min()) || (v.i > 0 && static_cast<uint64_t>(v.i) > L::max())) return false;
        *out = static_cast<T>(v.i);
    } else {
        if (v.u > static_cast<uint64_t>(L::max())) return false;
        *out = static_cast<T>(v.u);
    }
    return true;
}
template <class T>
const char* int_name() {
    return std::is_same<T, uint32_t>::value ? "uint32" : std::is_same<T, int32_t>::value ? "int32" : "uint64";
}

// Bounds-checked little-endian cursor; every failure names the file, the offset and what was being read.
struct Cursor {
    const uint8_t* p;
    size_t size;
    const std::string& file;
    size_t pos = 0;
    std::string ctx;  // "key 'x'" or "tensor 'y'" once known

    [[noreturn]] void fail(size_t at, const std::string& msg) const {
        throw Error(file + ": offset " + std::to_string(at) + ": " + (ctx.empty() ? "" : ctx + ": ") + msg);
    }
    size_t left() const { return size - pos; }
    void need(uint64_t n, const char* what) const {
        if (n > left())
            fail(pos, std::string("truncated: ") + what + " needs " + std::to_string(n) + " bytes, " +
                          std::to_string(left()) + " left in the file (" + std::to_string(size) + " bytes)");
    }
    template <class T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, p + pos, sizeof(T));
        pos += sizeof(T);
        return v;
    }
    std::string str(const char* what) {
        size_t at = pos;
        uint64_t n = read<uint64_t>(what);
        if (n > left())
            fail(at, std::string(what) + " of " + std::to_string(n) + " bytes runs past the end of the file (" +
                         std::to_string(left()) + " bytes left)");
        std::string s(reinterpret_cast<const char*>(p + pos), n);
        pos += n;
        return s;
    }
};

void read_value(Cursor& c, GGUFType t, int depth, uint64_t& budget, GGUFValue& v) {
    v.type = t;
    switch (t) {
        case GGUFType::GGUF_TYPE_UINT8: v.u = c.read<uint8_t>("uint8 value"); break;
        case GGUFType::GGUF_TYPE_INT8: v.i = c.read<int8_t>("int8 value"); break;
        case GGUFType::GGUF_TYPE_UINT16: v.u = c.read<uint16_t>("uint16 value"); break;
        case GGUFType::GGUF_TYPE_INT16: v.i = c.read<int16_t>("int16 value"); break;
        case GGUFType::GGUF_TYPE_UINT32: v.u = c.read<uint32_t>("uint32 value"); break;
        case GGUFType::GGUF_TYPE_INT32: v.i = c.read<int32_t>("int32 value"); break;
        case GGUFType::GGUF_TYPE_UINT64: v.u = c.read<uint64_t>("uint64 value"); break;
        case GGUFType::GGUF_TYPE_INT64: v.i = c.read<int64_t>("int64 value"); break;
        case GGUFType::GGUF_TYPE_FLOAT32: v.f = c.read<float>("float32 value"); break;
        case GGUFType::GGUF_TYPE_FLOAT64: v.f = c.read<double>("float64 value"); break;
        case GGUFType::GGUF_TYPE_STRING: v.s = c.str("string value"); break;
        case GGUFType::GGUF_TYPE_BOOL: {
            // gguf.md: "0 is false and 1 is true. Anything else is invalid".
            uint8_t b = c.read<uint8_t>("bool value");
            if (b > 1) c.fail(c.pos - 1, "bool value must be 0 or 1, found " + std::to_string(b));
            v.b = b != 0;
            break;
        }
        case GGUFType::GGUF_TYPE_ARRAY: {
            size_t at = c.pos;
            if (depth >= k_max_depth)
                c.fail(at, "arrays nested deeper than " + std::to_string(k_max_depth) + " levels");
            uint32_t et = c.read<uint32_t>("array element type");
            if (et > static_cast<uint32_t>(GGUFType::GGUF_TYPE_FLOAT64))
                c.fail(at, "unknown array element type " + std::to_string(et) + " (expected 0..12)");
            uint64_t n = c.read<uint64_t>("array length");
            uint64_t min = min_value_bytes(et);
            if (n > c.left() / min)
                c.fail(at + 4, "array of " + std::to_string(n) + " " + gguf_type_name(GGUFType(et)) +
                                   " needs at least " + std::to_string(min) + " bytes each, " +
                                   std::to_string(c.left()) + " bytes left in the file");
            if (n > budget)
                c.fail(at + 4, "array of " + std::to_string(n) + " elements exceeds the limit of " +
                                   std::to_string(k_max_array_values) + " metadata array elements per file");
            budget -= n;
            v.elem_type = GGUFType(et);
            v.arr.resize(n);
            for (auto& e : v.arr) read_value(c, GGUFType(et), depth + 1, budget, e);
            break;
        }
        default: c.fail(c.pos - 4, "unknown value type " + std::to_string(uint32_t(t)) + " (expected 0..12)");
    }
}

}  // namespace

const char* gguf_type_name(GGUFType t) {
    static const char* names[] = {"UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
                                  "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};
    uint32_t i = static_cast<uint32_t>(t);
    return i < 13 ? names[i] : "unknown";
}

bool gguf_type_block(uint32_t ggml_type, uint64_t* block_bytes, uint64_t* block_elems) {
    if (ggml_type >= k_n_ggml_types || k_ggml_types[ggml_type].block_bytes == 0) return false;
    if (block_bytes) *block_bytes = k_ggml_types[ggml_type].block_bytes;
    if (block_elems) *block_elems = k_ggml_types[ggml_type].block_elems;
    return true;
}

const char* gguf_ggml_type_name(uint32_t ggml_type) {
    return ggml_type < k_n_ggml_types ? k_ggml_types[ggml_type].name : "unknown";
}

#ifdef _WIN32
namespace {

// The system's text for a GetLastError() code, without the trailing line break.
std::string win32_message(DWORD code) {
    char buf[512];
    DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, nullptr, code, 0, buf,
                             sizeof buf, nullptr);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) n--;
    return n ? std::string(buf, n) : "Windows error " + std::to_string(code);
}

}  // namespace

// Windows: the UTF-8 path through CreateFileW, then a read-only view of a file mapping (MapViewOfFile keeps the
// section alive, so both handles are closed at once).
std::unique_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
    const int n_wide = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path.c_str(), -1, nullptr, 0);
    if (n_wide <= 0) throw Error(path + ": cannot open: the path is not valid UTF-8");
    std::wstring wide(size_t(n_wide), L'\0');
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path.c_str(), -1, wide.data(), n_wide);
    HANDLE file = CreateFileW(wide.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE, nullptr,
                              OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
    if (file == INVALID_HANDLE_VALUE) throw Error(path + ": cannot open: " + win32_message(GetLastError()));
    LARGE_INTEGER size;
    if (GetFileType(file) != FILE_TYPE_DISK) {
        CloseHandle(file);
        throw Error(path + ": not a regular file");
    }
    if (!GetFileSizeEx(file, &size)) {
        const DWORD err = GetLastError();
        CloseHandle(file);
        throw Error(path + ": cannot stat: " + win32_message(err));
    }
    std::unique_ptr<GGUFFile> f(new GGUFFile());
    f->path_ = path;
    f->size_ = static_cast<size_t>(size.QuadPart);
    if (f->size_ > 0) {  // a mapping of 0 bytes fails; an empty file is reported by parse()
        HANDLE mapping = CreateFileMappingW(file, nullptr, PAGE_READONLY, 0, 0, nullptr);
        const void* p = mapping ? MapViewOfFile(mapping, FILE_MAP_READ, 0, 0, 0) : nullptr;
        const DWORD err = GetLastError();
        if (mapping) CloseHandle(mapping);
        CloseHandle(file);
        if (!p)
            throw Error(path + ": mapping " + std::to_string(f->size_) + " bytes failed: " + win32_message(err));
        f->base_ = static_cast<const uint8_t*>(p);
        f->mapped_ = true;
    } else {
        CloseHandle(file);
    }
    f->parse();
    return f;
}
#else
std::unique_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        ::close(fd);
        throw Error(path + ": cannot stat: " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path + ": not a regular file");
    }
    std::unique_ptr<GGUFFile> f(new GGUFFile());
    f->path_ = path;
    f->size_ = static_cast<size_t>(st.st_size);
    if (f->size_ > 0) {  // mmap of 0 bytes fails; an empty file is reported by parse()
        // Every page mapped now: a decode step reads scattered rows of the FFN (sparse execution), and each first
        // touch of a page would otherwise stop that step for a page fault.
        int flags = MAP_PRIVATE;
#if defined(MAP_POPULATE)
        flags |= MAP_POPULATE;
#endif
        void* p = mmap(nullptr, f->size_, PROT_READ, flags, fd, 0);
        int err = errno;
        ::close(fd);
        if (p == MAP_FAILED)
            throw Error(path + ": mmap of " + std::to_string(f->size_) + " bytes failed: " + std::strerror(err));
        f->base_ = static_cast<const uint8_t*>(p);
        f->mapped_ = true;
    } else {
        ::close(fd);
    }
    f->parse();
    return f;
}
#endif

std::unique_ptr<GGUFFile> GGUFFile::from_memory(const void* data, size_t size, const std::string& name) {
    if (!data && size) throw Error(name + ": from_memory: null buffer of " + std::to_string(size) + " bytes");
    std::unique_ptr<GGUFFile> f(new GGUFFile());
    f->path_ = name;
    f->base_ = static_cast<const uint8_t*>(data);
    f->size_ = size;
    f->parse();
    return f;
}

GGUFFile::~GGUFFile() {
#ifdef _WIN32
    if (mapped_) UnmapViewOfFile(base_);
#else
    if (mapped_) munmap(const_cast<uint8_t*>(base_), size_);
#endif
}

void GGUFFile::parse() {
    Cursor c{base_, size_, path_, 0, {}};
    if (size_ < 4) c.fail(0, "not a GGUF file: " + std::to_string(size_) + " bytes, too short for the magic");
    if (std::memcmp(base_, "GGUF", 4) == 0) {
        powerinfer_ = false;
    } else if (std::memcmp(base_, "PWRI", 4) == 0) {
        powerinfer_ = true;  // PowerInfer's files: GGUF layout under another magic
    } else {
        char hex[16];
        std::snprintf(hex, sizeof hex, "%02x %02x %02x %02x", base_[0], base_[1], base_[2], base_[3]);
        c.fail(0, std::string("not a GGUF file: expected magic \"GGUF\" or \"PWRI\", found bytes ") + hex);
    }
    c.pos = 4;
    version_ = c.read<uint32_t>("version");
    uint32_t swapped = __builtin_bswap32(version_);
    if (version_ == 1)
        c.fail(4, "GGUF version 1 (32-bit counts) is not supported: expected version 2 or 3; re-convert the model");
    if ((version_ & 0xffff) == 0 && swapped >= 1 && swapped <= 3)
        c.fail(4, "byte-swapped (big-endian) GGUF version " + std::to_string(swapped) +
                      ": only little-endian files are supported");
    if (version_ != 2 && version_ != 3)  // v2 and v3 differ only in v3 allowing big-endian files
        c.fail(4, "unsupported GGUF version " + std::to_string(version_) + ": expected 2 or 3");
    uint64_t n_tensors = c.read<uint64_t>("tensor count");
    uint64_t n_kv = c.read<uint64_t>("metadata count");
    if (n_kv > c.left() / k_min_kv_bytes)
        c.fail(16, "metadata count " + std::to_string(n_kv) + " cannot fit in the " + std::to_string(c.left()) +
                       " bytes left (at least " + std::to_string(k_min_kv_bytes) + " bytes each)");
    if (n_tensors > c.left() / k_min_tensor_bytes)
        c.fail(8, "tensor count " + std::to_string(n_tensors) + " cannot fit in the " + std::to_string(c.left()) +
                      " bytes left (at least " + std::to_string(k_min_tensor_bytes) + " bytes each)");

    // Metadata.
    uint64_t budget = k_max_array_values;
    kv_.reserve(n_kv);
    for (uint64_t k = 0; k < n_kv; k++) {
        size_t at = c.pos;
        c.ctx = "key #" + std::to_string(k);
        std::string key = c.str("key");
        c.ctx = "key '" + key + "'";
        auto dup = kv_index_.find(key);
        if (dup != kv_index_.end())
            c.fail(at, "duplicate key (first at offset " + std::to_string(kv_offset_[dup->second]) + ")");
        uint32_t t = c.read<uint32_t>("value type");
        GGUFValue v;
        read_value(c, GGUFType(t), 0, budget, v);
        kv_index_.emplace(key, kv_.size());
        kv_offset_.push_back(at);
        kv_.emplace_back(std::move(key), std::move(v));
    }
    c.ctx.clear();
    if (const GGUFValue* a = find("general.alignment")) {
        size_t at = kv_offset_[kv_index_.at("general.alignment")];
        c.ctx = "key 'general.alignment'";
        if (a->type != GGUFType::GGUF_TYPE_UINT32)
            c.fail(at, std::string("expected UINT32, found ") + gguf_type_name(a->type));
        if (a->u == 0 || (a->u & (a->u - 1)) != 0)
            c.fail(at, "expected a nonzero power of two, found " + std::to_string(a->u));
        alignment_ = a->u;
    }

    // Tensor infos.
    tensors_.reserve(n_tensors);
    std::vector<size_t> info_offset;
    for (uint64_t k = 0; k < n_tensors; k++) {
        GGUFTensorInfo ti;
        size_t at = c.pos;
        c.ctx = "tensor #" + std::to_string(k);
        ti.name = c.str("tensor name");
        c.ctx = "tensor '" + ti.name + "'";
        auto dup = tensor_index_.find(ti.name);
        if (dup != tensor_index_.end())
            c.fail(at, "duplicate tensor name (first at offset " + std::to_string(info_offset[dup->second]) + ")");
        size_t dims_at = c.pos;
        ti.n_dims = c.read<uint32_t>("n_dims");
        if (ti.n_dims < 1 || ti.n_dims > 4) c.fail(dims_at, "n_dims must be 1..4, found " + std::to_string(ti.n_dims));
        uint64_t n_elem = 1;
        bool overflow = false;
        std::string shape;
        for (uint32_t d = 0; d < ti.n_dims; d++) {
            uint64_t ne = c.read<uint64_t>("dimension");
            shape += (d ? ", " : "") + std::to_string(ne);
            if (ne > uint64_t(INT64_MAX))
                c.fail(c.pos - 8, "ne[" + std::to_string(d) + "] = " + std::to_string(int64_t(ne)) + " is negative");
            ti.ne[d] = int64_t(ne);
            overflow |= __builtin_mul_overflow(n_elem, ne, &n_elem);
        }
        if (overflow || n_elem > uint64_t(INT64_MAX))
            c.fail(dims_at, "element count of [" + shape + "] overflows int64");
        size_t type_at = c.pos;
        ti.type = c.read<uint32_t>("ggml type");
        uint64_t bb, be;
        if (!gguf_type_block(ti.type, &bb, &be))
            c.fail(type_at, "ggml type " + std::to_string(ti.type) +
                                (ti.type < k_n_ggml_types ? std::string(" (") + gguf_ggml_type_name(ti.type) +
                                                                ") was retired from GGUF files; re-quantize the model"
                                                          : std::string(" is unknown (expected 0..") +
                                                                std::to_string(k_n_ggml_types - 1) + ")"));
        if (ti.ne[0] % int64_t(be) != 0)
            c.fail(dims_at, "ne[0] = " + std::to_string(ti.ne[0]) + " is not a multiple of the " +
                                gguf_ggml_type_name(ti.type) + " block size (" + std::to_string(be) + ")");
        // Bytes = blocks per row * block bytes * rows; can overflow even when the element count does not (F64).
        uint64_t row_bytes, rows = ti.ne[0] ? n_elem / uint64_t(ti.ne[0]) : 0;
        if (__builtin_mul_overflow(uint64_t(ti.ne[0]) / be, bb, &row_bytes) ||
            __builtin_mul_overflow(row_bytes, rows, &ti.n_bytes))
            c.fail(dims_at, "byte size of [" + shape + "] " + gguf_ggml_type_name(ti.type) + " overflows uint64");
        size_t off_at = c.pos;
        ti.offset = c.read<uint64_t>("data offset");
        if (ti.offset % alignment_ != 0)
            c.fail(off_at, "data offset " + std::to_string(ti.offset) + " is not a multiple of the alignment " +
                               std::to_string(alignment_));
        tensor_index_.emplace(ti.name, tensors_.size());
        info_offset.push_back(at);
        tensors_.push_back(std::move(ti));
    }
    c.ctx.clear();
    // The data section starts at the next multiple of the alignment (gguf.md: "_padding").
    data_offset_ = (c.pos + alignment_ - 1) / alignment_ * alignment_;

    // Data ranges: inside the file and not overlapping, checked in offset order.
    std::vector<size_t> order(tensors_.size());
    for (size_t k = 0; k < order.size(); k++) order[k] = k;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
    const GGUFTensorInfo* prev = nullptr;
    for (size_t k : order) {
        GGUFTensorInfo& ti = tensors_[k];
        c.ctx = "tensor '" + ti.name + "'";
        size_t at = info_offset[k];
        if (ti.offset > size_ || ti.n_bytes > size_)
            c.fail(at, "data of " + std::to_string(ti.n_bytes) + " bytes at data offset " + std::to_string(ti.offset) +
                           " runs past the end of the file (" + std::to_string(size_) + " bytes)");
        uint64_t begin = data_offset_ + ti.offset, end = begin + ti.n_bytes;  // all < 3 * size_: no overflow
        if (end > size_)
            c.fail(at, "data [" + std::to_string(begin) + ", " + std::to_string(end) +
                           ") runs past the end of the file (" + std::to_string(size_) + " bytes)");
        if (prev && ti.offset < prev->offset + prev->n_bytes)
            c.fail(at, "data [" + std::to_string(begin) + ", " + std::to_string(end) + ") overlaps tensor '" +
                           prev->name + "' [" + std::to_string(data_offset_ + prev->offset) + ", " +
                           std::to_string(data_offset_ + prev->offset + prev->n_bytes) + ")");
        ti.data = base_ + begin;
        if (ti.n_bytes) prev = &ti;
    }
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GGUFTensorInfo* GGUFFile::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

void GGUFFile::fail_key(const std::string& key, const std::string& msg) const {
    auto it = kv_index_.find(key);
    std::string where = it == kv_index_.end() ? "" : "offset " + std::to_string(kv_offset_[it->second]) + ": ";
    throw Error(path_ + ": " + where + "key '" + key + "': " + msg);
}

const GGUFValue& GGUFFile::need(const std::string& key, const char* expected) const {
    const GGUFValue* v = find(key);
    if (!v) throw Error(path_ + ": key '" + key + "' not found (expected " + expected + ")");
    return *v;
}

template <class T>
T GGUFFile::get_int(const std::string& key) const {
    const GGUFValue& v = need(key, int_name<T>());
    T out{};
    if (!is_integer(v.type))
        fail_key(key, std::string("expected an integer (") + int_name<T>() + "), found " + gguf_type_name(v.type));
    if (!int_to(v, &out))
        fail_key(key, std::string("value ") + int_str(v) + " (" + gguf_type_name(v.type) + ") does not fit in " +
                          int_name<T>());
    return out;
}

uint32_t GGUFFile::get_u32(const std::string& key) const { return get_int<uint32_t>(key); }
uint32_t GGUFFile::get_u32(const std::string& key, uint32_t fallback) const {
    return has(key) ? get_int<uint32_t>(key) : fallback;
}
int32_t GGUFFile::get_i32(const std::string& key) const { return get_int<int32_t>(key); }
int32_t GGUFFile::get_i32(const std::string& key, int32_t fallback) const {
    return has(key) ? get_int<int32_t>(key) : fallback;
}
uint64_t GGUFFile::get_u64(const std::string& key) const { return get_int<uint64_t>(key); }

float GGUFFile::get_f32(const std::string& key) const {
    const GGUFValue& v = need(key, "FLOAT32");
    if (v.type != GGUFType::GGUF_TYPE_FLOAT32 && v.type != GGUFType::GGUF_TYPE_FLOAT64)
        fail_key(key, std::string("expected FLOAT32 or FLOAT64, found ") + gguf_type_name(v.type));
    return float(v.f);
}
float GGUFFile::get_f32(const std::string& key, float fallback) const { return has(key) ? get_f32(key) : fallback; }

bool GGUFFile::get_bool(const std::string& key, bool fallback) const {
    const GGUFValue* v = find(key);
    if (!v) return fallback;
    if (v->type != GGUFType::GGUF_TYPE_BOOL)
        fail_key(key, std::string("expected BOOL, found ") + gguf_type_name(v->type));
    return v->b;
}

std::string GGUFFile::get_string(const std::string& key) const {
    const GGUFValue& v = need(key, "STRING");
    if (v.type != GGUFType::GGUF_TYPE_STRING)
        fail_key(key, std::string("expected STRING, found ") + gguf_type_name(v.type));
    return v.s;
}
std::string GGUFFile::get_string(const std::string& key, const std::string& fallback) const {
    return has(key) ? get_string(key) : fallback;
}

const GGUFValue& GGUFFile::need_array(const std::string& key, const char* expected) const {
    const GGUFValue& v = need(key, expected);
    if (v.type != GGUFType::GGUF_TYPE_ARRAY)
        fail_key(key, std::string("expected ") + expected + ", found " + gguf_type_name(v.type));
    return v;
}

std::vector<std::string> GGUFFile::get_string_array(const std::string& key) const {
    const GGUFValue& v = need_array(key, "ARRAY of STRING");
    if (v.elem_type != GGUFType::GGUF_TYPE_STRING)
        fail_key(key, std::string("expected ARRAY of STRING, found ARRAY of ") + gguf_type_name(v.elem_type));
    std::vector<std::string> out;
    out.reserve(v.arr.size());
    for (const auto& e : v.arr) out.push_back(e.s);
    return out;
}

std::vector<float> GGUFFile::get_f32_array(const std::string& key) const {
    const GGUFValue& v = need_array(key, "ARRAY of FLOAT32");
    if (v.elem_type != GGUFType::GGUF_TYPE_FLOAT32 && v.elem_type != GGUFType::GGUF_TYPE_FLOAT64)
        fail_key(key, std::string("expected ARRAY of FLOAT32, found ARRAY of ") + gguf_type_name(v.elem_type));
    std::vector<float> out;
    out.reserve(v.arr.size());
    for (const auto& e : v.arr) out.push_back(float(e.f));
    return out;
}

std::vector<int32_t> GGUFFile::get_i32_array(const std::string& key) const {
    const GGUFValue& v = need_array(key, "ARRAY of INT32");
    if (!is_integer(v.elem_type))
        fail_key(key, std::string("expected ARRAY of INT32, found ARRAY of ") + gguf_type_name(v.elem_type));
    std::vector<int32_t> out(v.arr.size());
    for (size_t k = 0; k < v.arr.size(); k++)
        if (!int_to(v.arr[k], &out[k]))
            fail_key(key, "element " + std::to_string(k) + ": value " + int_str(v.arr[k]) + " (" +
                              gguf_type_name(v.elem_type) + ") does not fit in int32");
    return out;
}

}  // namespace ember
