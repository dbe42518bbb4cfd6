// File reading shared by the apps and tools (header-only, like app-args.h).
#pragma once
#include <cerrno>
#include <cstdio>
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

// Writes text to path through PATH.tmp and a rename, so that a failed write never leaves a partial file under the
// name. Throws ember::Error naming the flag and the path.
inline void app_write_file(const std::string& flag, const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw Error(flag + ": cannot write '" + tmp + "': " + std::strerror(errno));
        out << text;
        out.flush();
        if (!out) throw Error(flag + ": writing '" + tmp + "' failed: " + std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        throw Error(flag + ": cannot rename '" + tmp + "' to '" + path + "': " + why);
    }
}

}  // namespace ember
