// File reading shared by the apps and tools (header-only, like app-args.h).
#pragma once
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

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

}  // namespace ember
