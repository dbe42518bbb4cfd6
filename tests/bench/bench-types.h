// "--types f16,q4_0": the weight types a benchmark runs, from its command line.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "kernels-cpu/dtype.h"

namespace ember_bench {

// Types named in a comma-separated list, spelled as dtype_name spells them. Returns false, with *unknown set to the
// first name that is none of F32, F16, BF16, Q8_0 and Q4_0.
inline bool bench_parse_types(const std::string& list, std::vector<ember::DType>* out, std::string* unknown) {
    using ember::DType;
    out->clear();
    for (size_t p = 0; p <= list.size();) {
        const size_t q = std::min(list.find(',', p), list.size());
        const std::string name = list.substr(p, q - p);
        bool found = false;
        for (DType t : {DType::DTYPE_F32, DType::DTYPE_F16, DType::DTYPE_BF16, DType::DTYPE_Q8_0, DType::DTYPE_Q4_0})
            if (name == ember::dtype_name(t)) out->push_back(t), found = true;
        if (!found) {
            *unknown = name;
            return false;
        }
        p = q + 1;
    }
    return true;
}

}  // namespace ember_bench
