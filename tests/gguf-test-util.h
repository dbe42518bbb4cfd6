// Helpers shared by the GGUF tests: a raw little-endian byte builder (to write files the writer would refuse),
// temporary paths and file I/O.
#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/gguf.h"

namespace ember_test {

// Appends GGUF fields (docs/gguf.md) in little-endian order.
struct Bytes {
    std::vector<uint8_t> b;
    template <class T>
    Bytes& put(T v) {
        uint8_t raw[sizeof(T)];
        std::memcpy(raw, &v, sizeof(T));
        b.insert(b.end(), raw, raw + sizeof(T));
        return *this;
    }
    Bytes& u32(uint32_t v) { return put(v); }
    Bytes& u64(uint64_t v) { return put(v); }
    Bytes& str(const std::string& s) {
        u64(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    // Header: magic, version, n_tensors, n_kv.
    static Bytes header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3, const char* magic = "GGUF") {
        Bytes x;
        x.b.assign(magic, magic + 4);
        x.u32(version).u64(n_tensors).u64(n_kv);
        return x;
    }
    Bytes& kv(const std::string& key, ember::GGUFType t) { return str(key).u32(uint32_t(t)); }
    Bytes& kv_u32(const std::string& key, uint32_t v) { return kv(key, ember::GGUFType::GGUF_TYPE_UINT32).u32(v); }
    Bytes& kv_str(const std::string& key, const std::string& v) {
        return kv(key, ember::GGUFType::GGUF_TYPE_STRING).str(v);
    }
    Bytes& tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
        str(name).u32(uint32_t(ne.size()));
        for (uint64_t n : ne) u64(n);
        return u32(type).u64(offset);
    }
    // Pads to `align`, then appends n bytes of a counting pattern.
    Bytes& data(size_t n, size_t align = 32) {
        while (b.size() % align) b.push_back(0);
        for (size_t k = 0; k < n; k++) b.push_back(uint8_t(k * 7 + 1));
        return *this;
    }
};

// A fresh directory under the test temp dir, removed (with its files) at destruction.
struct TempDir {
    std::string path;
    TempDir() {
        std::string tmpl = ::testing::TempDir() + "ember-gguf-XXXXXX";
        path = mkdtemp(&tmpl[0]) ? tmpl : std::string();
        EXPECT_FALSE(path.empty()) << "mkdtemp failed";
    }
    ~TempDir() {
        std::error_code ec;
        if (!path.empty()) std::filesystem::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return path + "/" + name; }
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

inline bool file_exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// Runs f, which must throw ember::Error; returns its message ("" and a test failure otherwise).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const ember::Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "expected ember::Error, got another exception: " << e.what();
        return "";
    }
    ADD_FAILURE() << "expected ember::Error, nothing was thrown";
    return "";
}

}  // namespace ember_test
