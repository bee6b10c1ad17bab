// UTF-8 checks and lossy decoding shared by the tokenizer, text streams,
// their tests and tools. Lossy means Rust's from_utf8_lossy: each maximal
// invalid subpart becomes one U+FFFD, as HF's decoders do.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace loraserve {

bool utf8_valid(std::string_view s, size_t* bad_offset = nullptr);
// Replaces each maximal invalid subpart with U+FFFD (from_utf8_lossy).
std::string utf8_lossy(std::string_view s);


// Appends the lossy decoding of s to *out; with keep_tail, a trailing
// unfinished (but so far valid) sequence is left unconsumed. Returns the
// bytes consumed.
size_t utf8_lossy_append(std::string_view s, bool keep_tail, std::string* out);

}  // namespace loraserve
