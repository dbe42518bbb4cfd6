// libFuzzer target for the GGUF reader. Built with clang -fsanitize=fuzzer,address,undefined from engine/gguf.cpp
// and this file only (tests/gguf.cmake). A finding is a crash, a sanitizer report, a leak, an allocation over
// -rss_limit_mb, or any exception other than ember::Error.
#include <cstddef>
#include <cstdint>

#include "engine/gguf.h"

using namespace ember;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        auto f = GGUFFile::from_memory(data, size, "fuzz.gguf");
        // Touch what a loader would: every getter on every key, and the first and last byte of every tensor,
        // so AddressSanitizer sees any range the validation let through.
        for (const auto& kv : f->metadata()) {
            const std::string& k = kv.first;
            auto tryget = [](auto get) {
                try {
                    get();
                } catch (const Error&) {
                }
            };
            tryget([&] { f->get_u32(k); });
            tryget([&] { f->get_i32(k, 0); });
            tryget([&] { f->get_u64(k); });
            tryget([&] { f->get_f32(k); });
            tryget([&] { f->get_bool(k, false); });
            tryget([&] { f->get_string(k); });
            tryget([&] { f->get_string_array(k); });
            tryget([&] { f->get_f32_array(k); });
            tryget([&] { f->get_i32_array(k); });
        }
        volatile uint8_t sink = 0;
        for (const auto& t : f->tensors()) {
            const uint8_t* p = static_cast<const uint8_t*>(t.data);
            if (t.n_bytes) sink = sink + p[0] + p[t.n_bytes - 1];
            if (f->find_tensor(t.name) != &t) __builtin_trap();
        }
    } catch (const Error&) {
    }
    return 0;
}
