// Text helpers for the Jinja renderer that reproduce Python 3 string and
// number behaviour byte for byte: code-point indexing of UTF-8, str.isspace,
// str.lower/upper/title/capitalize, float repr, str/repr quoting and
// json.dumps string escaping. Jinja templates are Python under the hood, so
// these are what make `{{ x }}` print what transformers prints.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace loraserve {
namespace jinja {

// --- UTF-8 -----------------------------------------------------------------

bool utf8_is_valid(std::string_view s);
// Decodes the code point at s[*pos] and advances *pos. Invalid bytes decode
// as U+FFFD one byte at a time (inputs are validated at the API border, so
// this only keeps the helpers total).
char32_t utf8_next(std::string_view s, size_t* pos);
void utf8_append(char32_t cp, std::string* out);
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(const std::u32string& s);
// Number of code points (Python's len(str)).
size_t utf8_length(std::string_view s);

// --- Python str semantics ---------------------------------------------------

// Py_UNICODE_ISSPACE: what str.split()/strip() treat as whitespace.
bool py_isspace(char32_t cp);
bool py_is_cased(char32_t cp);
bool py_isprintable(char32_t cp);
bool py_isalpha(char32_t cp);
bool py_isdigit(char32_t cp);
// Line boundaries of str.splitlines().
bool py_is_linebreak(char32_t cp);

std::string py_lower(std::string_view s);
std::string py_upper(std::string_view s);
std::string py_title(std::string_view s);       // str.title()
std::string py_capitalize(std::string_view s);  // str.capitalize()
std::string jinja_title(std::string_view s);    // Jinja's |title filter

// str.strip/lstrip/rstrip; chars == nullptr strips whitespace.
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right);
// str.split(sep, maxsplit); sep == nullptr splits on runs of whitespace.
std::vector<std::string> py_split(std::string_view s, const std::string* sep, int64_t maxsplit);
std::vector<std::string> py_rsplit(std::string_view s, const std::string* sep, int64_t maxsplit);
std::vector<std::string> py_splitlines(std::string_view s, bool keepends);
// str.replace(old, new, count); count < 0 replaces all.
std::string py_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count);
// Non-overlapping occurrences (str.count) and the code-point index of the
// first occurrence (str.find, -1 when absent).
int64_t py_count(std::string_view s, std::string_view sub);
int64_t py_find(std::string_view s, std::string_view sub, bool reverse);

// repr(str): quotes chosen and characters escaped as CPython does.
std::string py_repr_string(std::string_view s);
// repr(float) / str(float): shortest round-trip digits, Python's layout.
std::string py_float_repr(double v);
// round(x, ndigits) for floats (correctly rounded, ties to even).
double py_round(double v, int64_t ndigits);

// A JSON string literal as json.dumps writes it.
void json_escape_string(std::string_view s, bool ensure_ascii, std::string* out);

}  // namespace jinja
}  // namespace loraserve
