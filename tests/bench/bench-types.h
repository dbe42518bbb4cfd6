// What the benchmarks read from their command lines alike: their flags in turn, comma-separated lists ("--types
// f16,q4_0"), the model shapes they run at ("--shape 70b") and the CPU kernels' prefetch level ("--prefetch l2");
// and the median they print of their timings.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels-cpu/dot.h"
#include "kernels-cpu/dtype.h"

namespace ember_bench {

// Prints "NAME: MSG" and "usage: NAME SYNOPSIS" to stderr and exits with status 2.
[[noreturn]] inline void bench_usage(const char* name, const char* synopsis, const std::string& msg) {
    std::fprintf(stderr, "%s: %s\nusage: %s %s\n", name, msg.c_str(), name, synopsis);
    std::exit(2);
}

// The flags of a command line in turn: `for (BenchFlags f(argc, argv, usage); f.next();)`, f.flag() the current
// one, f.value() the argument after it; without one, value() calls usage("FLAG needs a value"), which must not return.
class BenchFlags {
public:
    BenchFlags(int argc, char** argv, void (*usage)(const std::string&)) : argc_(argc), argv_(argv), usage_(usage) {}
    bool next() {
        if (++i_ >= argc_) return false;
        flag_ = argv_[i_];
        return true;
    }
    const std::string& flag() const { return flag_; }
    std::string value() {
        if (i_ + 1 >= argc_) usage_(flag_ + " needs a value");
        return argv_[++i_];
    }

private:
    int argc_;
    char** argv_;
    void (*usage_)(const std::string&);
    int i_ = 0;
    std::string flag_;
};

// --prefetch l1|l2: sets the CPU kernels' prefetch level (kernels-cpu/dot.h). Returns false, changing nothing, for any
// other value.
inline bool bench_set_prefetch(const std::string& v) {
    if (v != "l1" && v != "l2") return false;
    ember::dot_set_prefetch_level(v == "l2" ? ember::PrefetchLevel::PREFETCH_L2 : ember::PrefetchLevel::PREFETCH_L1);
    return true;
}

// The items of a comma-separated list, empty ones included ("a,,b" has three).
inline std::vector<std::string> bench_split_list(const std::string& list) {
    std::vector<std::string> items;
    for (size_t p = 0; p <= list.size();) {
        const size_t q = std::min(list.find(',', p), list.size());
        items.push_back(list.substr(p, q - p));
        p = q + 1;
    }
    return items;
}

// Types named in a comma-separated list, spelled as dtype_name spells them. Returns false, with *unknown set to the
// first name that is none of F32, F16, BF16, Q8_0 and Q4_0.
inline bool bench_parse_types(const std::string& list, std::vector<ember::DType>* out, std::string* unknown) {
    using ember::DType;
    out->clear();
    for (const std::string& name : bench_split_list(list)) {
        bool found = false;
        for (DType t : {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_BF16, DType::DTYPE_Q8_0, DType::DTYPE_Q4_0})
            if (name == ember::dtype_name(t)) out->push_back(t), found = true;
        if (!found) {
            *unknown = name;
            return false;
        }
    }
    return true;
}

// A Llama-2 shape: the FFN's dim and n_ff, attention heads (of 128) and KV heads; the sizes of ember-synth's presets
// (synth_apply_preset in models/synth.h, which the kernel benchmarks do not link: they see the kernel libraries only).
struct BenchShape {
    int64_t dim = 4096, n_ff = 11008, heads = 32, kv_heads = 32;
};

// The shape named "7b", "13b" or "70b" into *out; false for any other name.
inline bool bench_parse_shape(const std::string& name, BenchShape* out) {
    if (name == "7b")
        *out = {4096, 11008, 32, 32};
    else if (name == "13b")
        *out = {5120, 13824, 40, 40};
    else if (name == "70b")
        *out = {8192, 28672, 64, 8};
    else
        return false;
    return true;
}

// The median of v (the upper one of an even count); v must not be empty.
inline double bench_median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace ember_bench
