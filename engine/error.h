// ember's one error type: every message names what was wrong and where (file, offset, tensor, key, request).
#pragma once
#include <stdexcept>
#include <string>

namespace ember {

struct Error : std::runtime_error {
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace ember
