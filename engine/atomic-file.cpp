#include "engine/atomic-file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/error.h"

namespace ember {

void write_file_atomically(const std::string& path, const std::string& bytes) {
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw Error(tmp + ": cannot create: " + std::strerror(errno));
    try {
        if (std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size())
            throw Error(tmp + ": write of " + std::to_string(bytes.size()) + " bytes failed: " + std::strerror(errno));
        if (std::fflush(f) != 0 || fsync(fileno(f)) != 0)
            throw Error(tmp + ": flush failed: " + std::strerror(errno));
        FILE* done = f;
        f = nullptr;
        if (std::fclose(done) != 0) throw Error(tmp + ": close failed: " + std::strerror(errno));
        if (std::rename(tmp.c_str(), path.c_str()) != 0)
            throw Error(tmp + ": rename to " + path + " failed: " + std::strerror(errno));
    } catch (...) {
        if (f) std::fclose(f);
        std::remove(tmp.c_str());
        throw;
    }
}

}  // namespace ember
