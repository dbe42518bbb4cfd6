// UTF-8 helpers for the tokenizers. Invalid input is handled the way llama.cpp's unicode.cpp handles it, because
// the token ids must match: a lead byte's length comes from its top four bits alone (continuation bytes count as
// one), and a byte that does not start a well-formed sequence decodes to U+FFFD.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ember {

// Bytes in the sequence that `lead` starts, from its top four bits: 1 (ASCII and stray continuation bytes),
// 2 (0xC0-0xDF), 3 (0xE0-0xEF) or 4 (0xF0-0xFF). Never reads past the lead byte.
size_t utf8_len(char lead);

// Appends the UTF-8 encoding of `cpt` (<= 0x10FFFF) to `out`.
void utf8_append(std::string& out, uint32_t cpt);

// Decodes one code point at s[*pos] and advances *pos. A lead byte without its continuation bytes decodes to
// U+FFFD and advances one byte (overlong forms are accepted, as in llama.cpp).
uint32_t utf8_next(const std::string& s, size_t* pos);

// The text decoded and re-encoded: each byte that does not start a well-formed sequence becomes U+FFFD, and
// code points a UTF-8 regex engine refuses (surrogates, above U+10FFFF) become U+FFFD too. Valid UTF-8 is returned
// unchanged.
std::string utf8_sanitize(const std::string& s);

}  // namespace ember
