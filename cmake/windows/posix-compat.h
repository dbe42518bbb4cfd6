// POSIX calls that ember's portable sources make and Windows spells differently. Force-included into every C++
// file of a MinGW build (cmake/mingw-w64-x86_64.cmake), so the sources keep one spelling:
//   fsync(fd)         -> _commit(fd): flushes the file's buffers to the disk (engine/gguf-writer.cpp,
//                        engine/placement.cpp, after fflush and before the rename that publishes the file)
//   lstat(path, &st)  -> stat: Windows' C runtime has no symbolic links to tell apart (engine/quantize.cpp)
#pragma once
#ifdef _WIN32
#include <io.h>
#include <sys/stat.h>

inline int fsync(int fd) { return _commit(fd); }
inline int lstat(const char* path, struct stat* st) { return stat(path, st); }
#endif
