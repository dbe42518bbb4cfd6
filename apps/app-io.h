// File reading and writing shared by the apps and tools (header-only, like app-args.h).
#pragma once
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/atomic-file.h"
#include "engine/error.h"

namespace ember {

// The whole file, bytes as they are. Throws ember::Error naming the flag that gave the path, the kind of file
// ("text", "prompt") and the path: "-f: cannot open text file 'a.txt': No such file or directory".
inline std::string app_read_file(const std::string& flag, const std::string& path, const std::string& kind = "text") {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(flag + ": cannot open " + kind + " file '" + path + "': " + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Writes text to path atomically (engine/atomic-file.h); errors start with the flag that gave the path.
inline void app_write_file(const std::string& flag, const std::string& path, const std::string& text) {
    try {
        write_file_atomically(path, text);
    } catch (const Error& e) {
        throw Error(flag + ": " + e.what());
    }
}

}  // namespace ember
