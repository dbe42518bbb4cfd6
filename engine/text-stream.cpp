#include "engine/text-stream.h"

#include <algorithm>

namespace ember {

namespace {

// Bytes in the UTF-8 sequence `lead` starts, from its top bits (llama.cpp's unicode_len_utf8).
size_t utf8_sequence_len(unsigned char lead) {
    if (lead < 0xC0) return 1;  // ASCII, or a stray continuation byte
    if (lead < 0xE0) return 2;
    if (lead < 0xF0) return 3;
    return 4;
}

// Length of the longest suffix of s that is a proper prefix of a stop string: text the next pieces may turn into
// a stop string.
size_t stop_prefix_len(const std::string& s, const std::vector<std::string>& stops) {
    size_t best = 0;
    for (const std::string& stop : stops)
        for (size_t n = std::min(s.size(), stop.size() - 1); n > best; n--)
            if (s.compare(s.size() - n, n, stop, 0, n) == 0) {
                best = n;
                break;
            }
    return best;
}

}  // namespace

size_t text_stream_utf8_incomplete(const std::string& s) {
    // A lead byte more than 3 bytes from the end has all its (at most 3) continuation bytes.
    for (size_t k = 1; k <= std::min<size_t>(3, s.size()); k++) {
        const unsigned char c = (unsigned char)s[s.size() - k];
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back for the lead
        return utf8_sequence_len(c) > k ? k : 0;
    }
    return 0;
}

TextStream::TextStream(std::vector<std::string> stops) {
    for (std::string& s : stops)
        if (!s.empty()) stops_.push_back(std::move(s));
}

const std::string& TextStream::stop_string() const {
    static const std::string none;
    return stop_ >= 0 ? stops_[stop_] : none;
}

std::string TextStream::push(const std::string& piece) {
    if (stopped()) return "";
    held_ += piece;
    // Everything before held_ was emitted, so a stop string cannot start there: the held suffix always covers the
    // start of a stop string still in progress. The earliest occurrence wins (a piece may hold several).
    size_t at = std::string::npos;
    for (size_t i = 0; i < stops_.size(); i++) {
        const size_t pos = held_.find(stops_[i]);
        if (pos < at) {
            at = pos;
            stop_ = (int)i;
        }
    }
    if (at != std::string::npos) {
        std::string out = held_.substr(0, at);
        held_.clear();
        return out;
    }
    const size_t hold = std::max(stop_prefix_len(held_, stops_), text_stream_utf8_incomplete(held_));
    std::string out = held_.substr(0, held_.size() - hold);
    held_.erase(0, out.size());
    return out;
}

std::string TextStream::flush() {
    std::string out;
    out.swap(held_);
    return out;
}

}  // namespace ember
