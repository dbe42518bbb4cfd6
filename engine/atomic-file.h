// Writing a whole file so that its name never holds a partial one: the bytes go to PATH.tmp, are flushed to disk,
// and the temporary is renamed over PATH. A failure removes the temporary and leaves an existing PATH as it was.
#pragma once
#include <string>

namespace ember {

// Throws ember::Error naming the file and the step that failed (create, write, flush, close, rename).
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace ember
