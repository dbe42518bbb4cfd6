// Streaming of generated text: token pieces (bytes) go in, text that is safe to show comes out. Held back until
// later pieces decide: a suffix that may still grow into one of the stop strings, and an incomplete UTF-8 sequence
// at the end (a character whose bytes are split across byte tokens). A completed stop string ends the stream; it and
// anything after it are never emitted (as llama.cpp's server treats stop words).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace ember {

class TextStream {
public:
    explicit TextStream(std::vector<std::string> stops);  // empty stop strings are ignored

    // Appends a piece and returns the text that can be emitted now (maybe ""). When the piece completes a stop
    // string, stopped() becomes true, the text before the stop string is returned and the rest is dropped; later
    // pushes return "".
    std::string push(const std::string& piece);
    // Ends the stream: returns all that is held back, an incomplete UTF-8 sequence as it is ("" once stopped).
    std::string flush();

    bool stopped() const { return stop_ >= 0; }
    // The stop string that ended the stream, "" while none has.
    const std::string& stop_string() const;

private:
    std::vector<std::string> stops_;
    std::string held_;  // received, not yet emitted
    int stop_ = -1;     // index into stops_ of the stop string found
};

// Bytes (0 to 3) at the end of `s` that start a UTF-8 sequence whose remaining bytes have not arrived. The length
// of a sequence comes from its lead byte, as in llama.cpp; stray continuation bytes are not held.
size_t text_stream_utf8_incomplete(const std::string& s);

}  // namespace ember
