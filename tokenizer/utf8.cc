#include "tokenizer/utf8.h"

namespace loraserve {

namespace {

const char kReplacementChar[] = "\xEF\xBF\xBD";

// At s[i]: 1 = a valid character of *len bytes; 2 = an invalid maximal
// subpart of *len bytes; 3 = a valid but unfinished sequence to the end.
int utf8_step(std::string_view s, size_t i, size_t* len) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    *len = 1;
    return 1;
  }
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    *len = 1;
    return 2;
  }
  for (size_t k = 1; k < need; ++k) {
    if (i + k >= s.size()) {
      *len = k;
      return 3;
    }
    const unsigned char b = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *len = k;
      return 2;
    }
  }
  *len = need;
  return 1;
}

}  // namespace

size_t utf8_lossy_append(std::string_view s, bool keep_tail, std::string* out) {
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    const int kind = utf8_step(s, i, &len);
    if (kind == 1) {
      out->append(s.data() + i, len);
    } else if (kind == 3 && keep_tail) {
      return i;
    } else {
      *out += kReplacementChar;
    }
    i += len;
  }
  return i;
}

bool utf8_valid(std::string_view s, size_t* bad_offset) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    if (utf8_step(s, i, &len) != 1) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  utf8_lossy_append(s, false, &out);
  return out;
}

}  // namespace loraserve
