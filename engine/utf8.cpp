#include "engine/utf8.h"

namespace ember {

size_t utf8_len(char lead) {
    static const uint8_t len_by_high_bits[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len_by_high_bits[uint8_t(lead) >> 4];
}

void utf8_append(std::string& out, uint32_t cpt) {
    if (cpt <= 0x7F) {
        out += char(cpt);
    } else if (cpt <= 0x7FF) {
        out += char(0xC0 | (cpt >> 6));
        out += char(0x80 | (cpt & 0x3F));
    } else if (cpt <= 0xFFFF) {
        out += char(0xE0 | (cpt >> 12));
        out += char(0x80 | ((cpt >> 6) & 0x3F));
        out += char(0x80 | (cpt & 0x3F));
    } else {
        out += char(0xF0 | ((cpt >> 18) & 0x07));
        out += char(0x80 | ((cpt >> 12) & 0x3F));
        out += char(0x80 | ((cpt >> 6) & 0x3F));
        out += char(0x80 | (cpt & 0x3F));
    }
}

static bool is_continuation(const std::string& s, size_t i) { return i < s.size() && (uint8_t(s[i]) & 0xC0) == 0x80; }

uint32_t utf8_next(const std::string& s, size_t* pos) {
    const size_t i = *pos;
    const uint8_t b0 = uint8_t(s[i]);
    if (b0 < 0x80) {
        *pos += 1;
        return b0;
    }
    // Same acceptance rule as llama.cpp's unicode_cpt_from_utf8: the lead byte's pattern and its continuation bytes.
    if ((b0 & 0xE0) == 0xC0 && is_continuation(s, i + 1)) {
        *pos += 2;
        return (uint32_t(b0 & 0x1F) << 6) | (uint8_t(s[i + 1]) & 0x3F);
    }
    if ((b0 & 0xF0) == 0xE0 && is_continuation(s, i + 1) && is_continuation(s, i + 2)) {
        *pos += 3;
        return (uint32_t(b0 & 0x0F) << 12) | (uint32_t(uint8_t(s[i + 1]) & 0x3F) << 6) | (uint8_t(s[i + 2]) & 0x3F);
    }
    if ((b0 & 0xF8) == 0xF0 && is_continuation(s, i + 1) && is_continuation(s, i + 2) && is_continuation(s, i + 3)) {
        *pos += 4;
        return (uint32_t(b0 & 0x07) << 18) | (uint32_t(uint8_t(s[i + 1]) & 0x3F) << 12) |
               (uint32_t(uint8_t(s[i + 2]) & 0x3F) << 6) | (uint8_t(s[i + 3]) & 0x3F);
    }
    *pos += 1;
    return 0xFFFD;
}

std::string utf8_sanitize(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    size_t pos = 0;
    while (pos < s.size()) {
        uint32_t cpt = utf8_next(s, &pos);
        if ((cpt >= 0xD800 && cpt <= 0xDFFF) || cpt > 0x10FFFF) cpt = 0xFFFD;
        utf8_append(out, cpt);
    }
    return out;
}

}  // namespace ember
