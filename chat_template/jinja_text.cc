#include "chat_template/jinja_text.h"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace loraserve {
namespace jinja {

// --- UTF-8 -----------------------------------------------------------------

bool utf8_is_valid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    char32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

char32_t utf8_next(std::string_view s, size_t* pos) {
  const size_t i = *pos;
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  char32_t cp = c;
  if (c >= 0xC0 && c < 0xE0) {
    n = 1;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c < 0xF0) {
    n = 2;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c < 0xF8) {
    n = 3;
    cp = c & 0x07;
  } else if (c >= 0x80) {
    *pos = i + 1;
    return 0xFFFD;
  }
  for (size_t k = 1; k <= n; ++k) {
    if (i + k >= s.size() || (static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) {
      *pos = i + 1;
      return 0xFFFD;
    }
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  }
  *pos = i + n + 1;
  return cp;
}

void utf8_append(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) out.push_back(utf8_next(s, &pos));
  return out;
}

std::string utf8_encode(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : s) utf8_append(cp, &out);
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// --- character classes -------------------------------------------------------

namespace {

utf8proc_category_t category(char32_t cp) {
  if (cp > 0x10FFFF) return UTF8PROC_CATEGORY_CN;
  return utf8proc_category(static_cast<utf8proc_int32_t>(cp));
}

// Word_Break MidLetter/MidNumLet/Single_Quote plus Mn, Me, Cf, Lm, Sk:
// what Unicode calls case-ignorable (used by the final-sigma rule).
bool is_case_ignorable(char32_t cp) {
  switch (cp) {
    case '\'': case '.': case ':': case '^': case '`': case 0x00B7: case 0x2018: case 0x2019:
    case 0x2024: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
      return true;
    default:
      break;
  }
  switch (category(cp)) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_SK:
      return true;
    default:
      return false;
  }
}

// Full case mappings (SpecialCasing.txt) that differ from the simple ones
// utf8proc gives, limited to the common Latin ones.
struct SpecialCase {
  char32_t cp;
  const char32_t* lower;
  const char32_t* title;
  const char32_t* upper;
};

const SpecialCase kSpecialCases[] = {
    {0x00DF, U"\u00DF", U"Ss", U"SS"},
    {0x0130, U"i\u0307", U"\u0130", U"\u0130"},
    {0x0149, U"\u0149", U"\u02BCN", U"\u02BCN"},
    {0x01F0, U"\u01F0", U"J\u030C", U"J\u030C"},
    {0xFB00, U"\uFB00", U"Ff", U"FF"},
    {0xFB01, U"\uFB01", U"Fi", U"FI"},
    {0xFB02, U"\uFB02", U"Fl", U"FL"},
    {0xFB03, U"\uFB03", U"Ffi", U"FFI"},
    {0xFB04, U"\uFB04", U"Ffl", U"FFL"},
    {0xFB05, U"\uFB05", U"St", U"ST"},
    {0xFB06, U"\uFB06", U"St", U"ST"},
};

const SpecialCase* find_special(char32_t cp) {
  if (cp < 0xDF) return nullptr;
  for (const auto& s : kSpecialCases) {
    if (s.cp == cp) return &s;
  }
  return nullptr;
}

enum class CaseKind { kLower, kUpper, kTitle };

void append_cased(char32_t cp, CaseKind kind, std::u32string* out) {
  if (const SpecialCase* sc = find_special(cp)) {
    const char32_t* m = kind == CaseKind::kLower ? sc->lower
                        : kind == CaseKind::kUpper ? sc->upper
                                                   : sc->title;
    out->append(m);
    return;
  }
  if (cp > 0x10FFFF) {
    out->push_back(cp);
    return;
  }
  const auto c = static_cast<utf8proc_int32_t>(cp);
  switch (kind) {
    case CaseKind::kLower: out->push_back(static_cast<char32_t>(utf8proc_tolower(c))); break;
    case CaseKind::kUpper: out->push_back(static_cast<char32_t>(utf8proc_toupper(c))); break;
    case CaseKind::kTitle: out->push_back(static_cast<char32_t>(utf8proc_totitle(c))); break;
  }
}

// CPython's handle_capital_sigma: U+03A3 lowers to final sigma at the end of
// a cased word.
char32_t lower_sigma(const std::u32string& s, size_t i) {
  size_t j = i;
  char32_t c = 0;
  bool found = false;
  while (j > 0) {
    c = s[--j];
    if (!is_case_ignorable(c)) {
      found = true;
      break;
    }
  }
  bool final_sigma = found && py_is_cased(c);
  if (final_sigma) {
    for (j = i + 1; j < s.size(); ++j) {
      if (!is_case_ignorable(s[j])) break;
    }
    final_sigma = j == s.size() || !py_is_cased(s[j]);
  }
  return final_sigma ? 0x3C2 : 0x3C3;
}

void append_lower_at(const std::u32string& s, size_t i, std::u32string* out) {
  if (s[i] == 0x3A3) {
    out->push_back(lower_sigma(s, i));
  } else {
    append_cased(s[i], CaseKind::kLower, out);
  }
}

}  // namespace

bool py_isspace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool py_is_cased(char32_t cp) {
  const auto cat = category(cp);
  if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT) {
    return true;
  }
  if (cp > 0x10FFFF) return false;
  const auto c = static_cast<utf8proc_int32_t>(cp);
  return utf8proc_tolower(c) != c || utf8proc_toupper(c) != c;
}

bool py_isprintable(char32_t cp) {
  if (cp == ' ') return true;
  switch (category(cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
      return false;
    default:
      return true;
  }
}

bool py_isalpha(char32_t cp) {
  const auto cat = category(cp);
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

bool py_isdigit(char32_t cp) {
  return category(cp) == UTF8PROC_CATEGORY_ND || (cp >= 0xB2 && cp <= 0xB3) || cp == 0xB9 ||
         (cp >= 0x2070 && cp <= 0x2079 && cp != 0x2071 && cp != 0x2072 && cp != 0x2073) ||
         (cp >= 0x2080 && cp <= 0x2089) || (cp >= 0x2460 && cp <= 0x2468);
}

bool py_is_linebreak(char32_t cp) {
  return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D ||
         cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

// --- case mapping ---------------------------------------------------------------

namespace {

bool is_ascii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
char ascii_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }
bool ascii_cased(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

}  // namespace

std::string py_lower(std::string_view s) {
  if (is_ascii(s)) {
    std::string out(s);
    for (char& c : out) c = ascii_lower(c);
    return out;
  }
  const std::u32string in = utf8_decode(s);
  std::u32string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) append_lower_at(in, i, &out);
  return utf8_encode(out);
}

std::string py_upper(std::string_view s) {
  if (is_ascii(s)) {
    std::string out(s);
    for (char& c : out) c = ascii_upper(c);
    return out;
  }
  const std::u32string in = utf8_decode(s);
  std::u32string out;
  out.reserve(in.size());
  for (char32_t cp : in) append_cased(cp, CaseKind::kUpper, &out);
  return utf8_encode(out);
}

std::string py_title(std::string_view s) {
  if (is_ascii(s)) {
    std::string out(s);
    bool previous_is_cased = false;
    for (char& c : out) {
      const bool cased = ascii_cased(c);
      c = previous_is_cased ? ascii_lower(c) : ascii_upper(c);
      previous_is_cased = cased;
    }
    return out;
  }
  const std::u32string in = utf8_decode(s);
  std::u32string out;
  out.reserve(in.size());
  bool previous_is_cased = false;
  for (size_t i = 0; i < in.size(); ++i) {
    if (previous_is_cased) {
      append_lower_at(in, i, &out);
    } else {
      append_cased(in[i], CaseKind::kTitle, &out);
    }
    previous_is_cased = py_is_cased(in[i]);
  }
  return utf8_encode(out);
}

std::string py_capitalize(std::string_view s) {
  if (is_ascii(s)) {
    std::string out(s);
    for (size_t i = 0; i < out.size(); ++i) out[i] = i == 0 ? ascii_upper(out[i]) : ascii_lower(out[i]);
    return out;
  }
  const std::u32string in = utf8_decode(s);
  std::u32string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (i == 0) {
      append_cased(in[i], CaseKind::kTitle, &out);
    } else {
      append_lower_at(in, i, &out);
    }
  }
  return utf8_encode(out);
}

std::string jinja_title(std::string_view s) {
  // Jinja splits on the regex ([-\s({\[<]+) and turns each piece into
  // piece[0].upper() + piece[1:].lower(); separators are unchanged by that.
  auto is_sep = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
  };
  if (is_ascii(s)) {
    std::string out(s);
    bool word_start = true;
    for (char& c : out) {
      if (is_sep(static_cast<unsigned char>(c))) {
        word_start = true;
        continue;
      }
      c = word_start ? ascii_upper(c) : ascii_lower(c);
      word_start = false;
    }
    return out;
  }
  const std::u32string in = utf8_decode(s);
  std::u32string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    if (is_sep(in[i])) {
      out.push_back(in[i++]);
      continue;
    }
    size_t end = i;
    while (end < in.size() && !is_sep(in[end])) ++end;
    const std::u32string word = in.substr(i, end - i);
    append_cased(word[0], CaseKind::kUpper, &out);
    for (size_t k = 1; k < word.size(); ++k) append_lower_at(word, k, &out);
    i = end;
  }
  return utf8_encode(out);
}

// --- strip / split / replace ------------------------------------------------

namespace {

// Start of the code point that ends just before `end`.
size_t utf8_prev(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80 && end - i < 4) --i;
  return i;
}

}  // namespace

std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right) {
  std::u32string set;
  if (chars != nullptr) set = utf8_decode(*chars);
  auto strip_it = [&](char32_t c) {
    return chars == nullptr ? py_isspace(c) : set.find(c) != std::u32string::npos;
  };
  size_t begin = 0;
  size_t end = s.size();
  if (left) {
    while (begin < end) {
      size_t next = begin;
      if (!strip_it(utf8_next(s, &next))) break;
      begin = next;
    }
  }
  if (right) {
    while (end > begin) {
      const size_t prev = utf8_prev(s, end);
      size_t pos = prev;
      if (!strip_it(utf8_next(s, &pos))) break;
      end = prev;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

std::vector<std::string> py_split(std::string_view s, const std::string* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (maxsplit < 0) maxsplit = INT64_MAX;
  if (sep != nullptr) {
    size_t pos = 0;
    while (maxsplit > 0) {
      const size_t hit = s.find(*sep, pos);
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, hit - pos));
      pos = hit + sep->size();
      --maxsplit;
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  // Runs of whitespace separate; leading and trailing whitespace is dropped.
  auto space_at = [&](size_t pos, size_t* next) {
    *next = pos;
    return py_isspace(utf8_next(s, next));
  };
  size_t i = 0;
  const size_t n = s.size();
  size_t next;
  while (i < n) {
    while (i < n && space_at(i, &next)) i = next;
    if (i == n) break;
    if (maxsplit == 0) {
      out.emplace_back(s.substr(i));
      return out;
    }
    size_t j = i;
    while (j < n && !space_at(j, &next)) j = next;
    out.emplace_back(s.substr(i, j - i));
    --maxsplit;
    i = j;
  }
  return out;
}

std::vector<std::string> py_rsplit(std::string_view s, const std::string* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (maxsplit < 0) maxsplit = INT64_MAX;
  if (sep != nullptr) {
    size_t end = s.size();
    while (maxsplit > 0 && end >= sep->size()) {
      const size_t hit = s.rfind(*sep, end - sep->size());
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(hit + sep->size(), end - hit - sep->size()));
      end = hit;
      --maxsplit;
    }
    out.emplace_back(s.substr(0, end));
    return {out.rbegin(), out.rend()};
  }
  auto space_before = [&](size_t end, size_t* prev) {
    *prev = utf8_prev(s, end);
    size_t pos = *prev;
    return py_isspace(utf8_next(s, &pos));
  };
  size_t j = s.size();
  size_t prev;
  while (j > 0) {
    while (j > 0 && space_before(j, &prev)) j = prev;
    if (j == 0) break;
    if (maxsplit == 0) {
      out.emplace_back(s.substr(0, j));
      break;
    }
    size_t i = j;
    while (i > 0 && !space_before(i, &prev)) i = prev;
    out.emplace_back(s.substr(i, j - i));
    --maxsplit;
    j = i;
  }
  return {out.rbegin(), out.rend()};
}

std::vector<std::string> py_splitlines(std::string_view s, bool keepends) {
  const std::u32string in = utf8_decode(s);
  std::vector<std::string> out;
  size_t i = 0;
  while (i < in.size()) {
    size_t j = i;
    while (j < in.size() && !py_is_linebreak(in[j])) ++j;
    size_t eol = j;
    if (j < in.size()) {
      eol = (in[j] == '\r' && j + 1 < in.size() && in[j + 1] == '\n') ? j + 2 : j + 1;
    }
    out.push_back(utf8_encode(in.substr(i, (keepends ? eol : j) - i)));
    i = eol;
  }
  return out;
}

std::string py_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count) {
  if (count < 0) count = INT64_MAX;
  std::string out;
  if (old.empty()) {
    // Python inserts repl before every code point and at the end.
    size_t pos = 0;
    while (pos < s.size() && count > 0) {
      out.append(repl);
      const size_t start = pos;
      utf8_next(s, &pos);
      out.append(s.substr(start, pos - start));
      --count;
    }
    if (pos < s.size()) {
      out.append(s.substr(pos));
    } else if (count > 0) {
      out.append(repl);
    }
    return out;
  }
  size_t pos = 0;
  while (count > 0) {
    const size_t hit = s.find(old, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(repl);
    pos = hit + old.size();
    --count;
  }
  out.append(s.substr(pos));
  return out;
}

int64_t py_count(std::string_view s, std::string_view sub) {
  if (sub.empty()) return static_cast<int64_t>(utf8_length(s)) + 1;
  int64_t n = 0;
  size_t pos = 0;
  while ((pos = s.find(sub, pos)) != std::string_view::npos) {
    ++n;
    pos += sub.size();
  }
  return n;
}

int64_t py_find(std::string_view s, std::string_view sub, bool reverse) {
  const size_t hit = reverse ? s.rfind(sub) : s.find(sub);
  if (hit == std::string_view::npos) return -1;
  return static_cast<int64_t>(utf8_length(s.substr(0, hit)));
}

// --- repr -------------------------------------------------------------------

namespace {

void append_hex(uint32_t v, int digits, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) out->push_back(kHex[(v >> (4 * i)) & 0xF]);
}

}  // namespace

std::string py_repr_string(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back(quote);
  size_t pos = 0;
  while (pos < s.size()) {
    const char32_t cp = utf8_next(s, &pos);
    if (cp == static_cast<char32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp < 0x20 || cp == 0x7F) {
      out += "\\x";
      append_hex(cp, 2, &out);
    } else if (cp < 0x7F) {
      out.push_back(static_cast<char>(cp));
    } else if (py_isprintable(cp)) {
      utf8_append(cp, &out);
    } else if (cp <= 0xFF) {
      out += "\\x";
      append_hex(cp, 2, &out);
    } else if (cp <= 0xFFFF) {
      out += "\\u";
      append_hex(cp, 4, &out);
    } else {
      out += "\\U";
      append_hex(cp, 8, &out);
    }
  }
  out.push_back(quote);
  return out;
}

std::string py_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  // The shortest %e precision that reads back as v is what repr prints.
  char buf[64];
  int precision = 1;
  for (; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*e", precision - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  // buf is "[-]d[.ddd]e[+-]xx": split digits and exponent.
  std::string text(buf);
  std::string sign;
  if (text[0] == '-') {
    sign = "-";
    text.erase(0, 1);
  }
  const size_t e = text.find('e');
  std::string digits = text.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int exponent = std::atoi(text.c_str() + e + 1);
  const int decpt = exponent + 1;  // digits[0] sits before this many places
  const int n = static_cast<int>(digits.size());
  std::string out = sign;
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (n > 1) {
      out += '.';
      out += digits.substr(1);
    }
    out += 'e';
    out += exponent < 0 ? '-' : '+';
    const int mag = std::abs(exponent);
    if (mag < 10) out += '0';
    out += std::to_string(mag);
  } else if (decpt <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-decpt), '0');
    out += digits;
  } else if (decpt >= n) {
    out += digits;
    out.append(static_cast<size_t>(decpt - n), '0');
    out += ".0";
  } else {
    out += digits.substr(0, static_cast<size_t>(decpt));
    out += '.';
    out += digits.substr(static_cast<size_t>(decpt));
  }
  return out;
}

double py_round(double v, int64_t ndigits) {
  if (!std::isfinite(v) || v == 0) return v;
  if (ndigits > 323) return v;
  if (ndigits < -308) return 0.0 * v;
  if (ndigits >= 0) {
    // glibc's printf rounds the exact binary value half-to-even, as
    // CPython's round() does through _Py_dg_dtoa.
    std::vector<char> buf(400);
    std::snprintf(buf.data(), buf.size(), "%.*f", static_cast<int>(ndigits), v);
    return std::strtod(buf.data(), nullptr);
  }
  const double scale = std::pow(10.0, static_cast<double>(-ndigits));
  const double scaled = v / scale;
  double rounded = std::nearbyint(scaled);
  return rounded * scale;
}

void json_escape_string(std::string_view s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    const char32_t cp = utf8_next(s, &pos);
    switch (cp) {
      case '"': *out += "\\\""; continue;
      case '\\': *out += "\\\\"; continue;
      case '\n': *out += "\\n"; continue;
      case '\r': *out += "\\r"; continue;
      case '\t': *out += "\\t"; continue;
      case '\b': *out += "\\b"; continue;
      case '\f': *out += "\\f"; continue;
      default: break;
    }
    if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
      if (cp >= 0x10000) {
        const char32_t v = cp - 0x10000;
        *out += "\\u";
        append_hex(0xD800 | (v >> 10), 4, out);
        *out += "\\u";
        append_hex(0xDC00 | (v & 0x3FF), 4, out);
      } else {
        *out += "\\u";
        append_hex(cp, 4, out);
      }
      continue;
    }
    out->append(s.substr(start, pos - start));
  }
  out->push_back('"');
}

}  // namespace jinja
}  // namespace loraserve
