#include "chat_template/jinja_lexer.h"

#include <cmath>
#include <cstdlib>

#include <utf8proc.h>

#include "chat_template/jinja_text.h"

namespace loraserve {
namespace jinja {
namespace {

Status syntax_error(int line, const std::string& message) {
  return invalid_argument("chat template syntax error at line " + std::to_string(line) + ": " +
                          message);
}

// jinja2 splits the source on \r\n|\r|\n, drops one empty last line
// (keep_trailing_newline=False) and joins with \n.
std::string normalize_source(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      out.push_back('\n');
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

int count_newlines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// Python's \s for str patterns is str.isspace().
size_t whitespace_run(std::string_view s, size_t pos) {
  size_t end = pos;
  while (end < s.size()) {
    size_t next = end;
    if (!py_isspace(utf8_next(s, &next))) break;
    end = next;
  }
  return end;
}

bool is_all_whitespace(std::string_view s) {
  return !s.empty() && whitespace_run(s, 0) == s.size();
}

std::string rstrip_whitespace(std::string_view s) {
  const std::string stripped = py_strip(s, nullptr, false, true);
  return stripped;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// (\d+_)*\d+ at pos; returns the end or npos.
size_t match_digits(std::string_view s, size_t pos) {
  if (pos >= s.size() || !is_digit(s[pos])) return std::string_view::npos;
  size_t i = pos;
  while (true) {
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i + 1 < s.size() && s[i] == '_' && is_digit(s[i + 1])) {
      ++i;
      continue;
    }
    return i;
  }
}

// jinja2's float_re; returns the end or npos.
size_t match_float(std::string_view s, size_t pos) {
  if (pos > 0 && s[pos - 1] == '.') return std::string_view::npos;
  const size_t int_end = match_digits(s, pos);
  if (int_end == std::string_view::npos) return std::string_view::npos;
  auto match_exponent = [&](size_t at) -> size_t {
    if (at >= s.size() || (s[at] != 'e' && s[at] != 'E')) return std::string_view::npos;
    ++at;
    if (at < s.size() && (s[at] == '+' || s[at] == '-')) ++at;
    return match_digits(s, at);
  };
  size_t frac_end = std::string_view::npos;
  if (int_end < s.size() && s[int_end] == '.') frac_end = match_digits(s, int_end + 1);
  if (frac_end != std::string_view::npos) {
    const size_t exp_end = match_exponent(frac_end);
    if (exp_end != std::string_view::npos) return exp_end;
  }
  const size_t exp_end = match_exponent(int_end);
  if (exp_end != std::string_view::npos) return exp_end;
  return frac_end;
}

// jinja2's integer_re (binary, octal, hex, decimal); returns the end or npos.
size_t match_integer(std::string_view s, size_t pos, int* base) {
  auto run = [&](size_t at, auto is_ok) -> size_t {
    // (_?[digit])+
    size_t i = at;
    bool any = false;
    while (true) {
      size_t j = i;
      if (j < s.size() && s[j] == '_') ++j;
      if (j < s.size() && is_ok(s[j])) {
        i = j + 1;
        any = true;
      } else {
        break;
      }
    }
    return any ? i : std::string_view::npos;
  };
  if (pos + 1 < s.size() && s[pos] == '0') {
    const char p = static_cast<char>(s[pos + 1] | 0x20);
    size_t end = std::string_view::npos;
    if (p == 'b') {
      end = run(pos + 2, [](char c) { return c == '0' || c == '1'; });
      *base = 2;
    } else if (p == 'o') {
      end = run(pos + 2, [](char c) { return c >= '0' && c <= '7'; });
      *base = 8;
    } else if (p == 'x') {
      end = run(pos + 2, [](char c) {
        return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
      });
      *base = 16;
    }
    if (end != std::string_view::npos) return end;
  }
  *base = 10;
  if (pos >= s.size() || !is_digit(s[pos])) return std::string_view::npos;
  if (s[pos] == '0') {
    const size_t end = run(pos + 1, [](char c) { return c == '0'; });
    return end == std::string_view::npos ? pos + 1 : end;
  }
  const size_t end = run(pos + 1, is_digit);
  return end == std::string_view::npos ? pos + 1 : end;
}

bool is_name_char(char32_t cp, bool first) {
  if (cp < 0x80) {
    return cp == '_' || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           (!first && cp >= '0' && cp <= '9');
  }
  // Python identifiers: letters anywhere, marks/digits/connectors after the first.
  if (cp > 0x10FFFF) return false;
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  if (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) return true;
  if (cat == UTF8PROC_CATEGORY_NL) return true;
  return !first && (cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_MC ||
                    cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_PC);
}

int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  const char l = static_cast<char>(c | 0x20);
  if (l >= 'a' && l <= 'f') return l - 'a' + 10;
  return -1;
}

// Decodes a string literal's body as Python's unicode-escape codec does
// (after jinja2 backslash-escapes the non-ASCII characters).
Status decode_string_body(std::string_view body, int line, std::string* out) {
  size_t i = 0;
  while (i < body.size()) {
    if (body[i] != '\\') {
      const size_t start = i;
      utf8_next(body, &i);
      out->append(body.substr(start, i - start));
      continue;
    }
    ++i;
    if (i >= body.size()) return syntax_error(line, "\\ at end of string");
    const char c = body[i];
    if (static_cast<unsigned char>(c) >= 0x80) {
      // jinja2 first turns 'é' into '\xe9', so '\é' reads as a backslash and "xe9".
      const char32_t cp = utf8_next(body, &i);
      char buf[16];
      if (cp < 0x100) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(cp));
      } else if (cp < 0x10000) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", static_cast<unsigned>(cp));
      }
      *out += buf;
      continue;
    }
    ++i;
    switch (c) {
      case '\n': break;  // line continuation
      case '\\': out->push_back('\\'); break;
      case '\'': out->push_back('\''); break;
      case '"': out->push_back('"'); break;
      case 'a': out->push_back('\a'); break;
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'n': out->push_back('\n'); break;
      case 'r': out->push_back('\r'); break;
      case 't': out->push_back('\t'); break;
      case 'v': out->push_back('\v'); break;
      case 'x': case 'u': case 'U': {
        const size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (size_t k = 0; k < digits; ++k) {
          const int h = i + k < body.size() ? hex_value(body[i + k]) : -1;
          if (h < 0) return syntax_error(line, std::string("truncated \\") + c + " escape");
          cp = cp * 16 + static_cast<uint32_t>(h);
        }
        i += digits;
        if (cp > 0x10FFFF) return syntax_error(line, "illegal Unicode character");
        if (cp >= 0xD800 && cp <= 0xDFFF) {
          return syntax_error(line, "surrogate code points are not supported in strings");
        }
        utf8_append(cp, out);
        break;
      }
      case 'N': return syntax_error(line, "\\N{...} escapes are not supported");
      default:
        if (c >= '0' && c <= '7') {
          uint32_t cp = static_cast<uint32_t>(c - '0');
          for (int k = 0; k < 2 && i < body.size() && body[i] >= '0' && body[i] <= '7'; ++k) {
            cp = cp * 8 + static_cast<uint32_t>(body[i++] - '0');
          }
          utf8_append(cp, out);
        } else {
          // Unknown escapes stay as written.
          out->push_back('\\');
          out->push_back(c);
        }
        break;
    }
  }
  return ok_status();
}

const char* const kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%",
                                  "~",  "[",  "]",  "(",  ")",  "{",  "}", ">", "<", "=", ".",
                                  ":",  "|",  ",",  ";"};

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  StatusOr<std::vector<Token>> run() {
    while (pos_ < src_.size()) {
      LS_RETURN_IF_ERROR(lex_root());
    }
    push(TokenType::kEof, "");
    return std::move(tokens_);
  }

 private:
  enum class TagKind { kVariable, kBlock, kComment, kRaw };

  void push(TokenType type, std::string text) {
    Token t;
    t.type = type;
    t.line = line_;
    t.text = std::move(text);
    tokens_.push_back(std::move(t));
  }

  // Length of `{%(-|+|)\s*raw\s*(-%}\s*|%})` at pos, or 0.
  size_t match_raw_begin(size_t pos) const {
    size_t i = pos + 2;
    if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) ++i;
    i = whitespace_run(src_, i);
    if (src_.compare(i, 3, "raw") != 0) return 0;
    i = whitespace_run(src_, i + 3);
    if (src_.compare(i, 3, "-%}") == 0) return whitespace_run(src_, i + 3) - pos;
    if (src_.compare(i, 2, "%}") == 0) return i + 2 - pos;
    return 0;
  }

  // Applies `-` / lstrip_blocks to the text before a tag and emits it.
  void emit_text(std::string text, char sign, bool lstrip_allowed) {
    if (sign == '-') {
      text = rstrip_whitespace(text);
    } else if (sign != '+' && lstrip_allowed) {
      const size_t nl = text.rfind('\n');
      const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting_) && is_all_whitespace(std::string_view(text).substr(l_pos))) {
        text.resize(l_pos);
      }
    }
    if (!text.empty()) push(TokenType::kData, std::move(text));
  }

  Status lex_root() {
    // Find the next tag opener.
    size_t tag = pos_;
    TagKind kind = TagKind::kVariable;
    size_t raw_len = 0;
    for (;; ++tag) {
      tag = src_.find('{', tag);
      if (tag == std::string::npos || tag + 1 >= src_.size()) {
        tag = std::string::npos;
        break;
      }
      const char c = src_[tag + 1];
      if (c == '%') {
        raw_len = match_raw_begin(tag);
        kind = raw_len > 0 ? TagKind::kRaw : TagKind::kBlock;
        break;
      }
      if (c == '{') {
        kind = TagKind::kVariable;
        break;
      }
      if (c == '#') {
        kind = TagKind::kComment;
        break;
      }
    }
    if (tag == std::string::npos) {
      push(TokenType::kData, src_.substr(pos_));
      line_ += count_newlines(std::string_view(src_).substr(pos_));
      pos_ = src_.size();
      return ok_status();
    }
    const char sign = (tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+'))
                          ? src_[tag + 2]
                          : '\0';
    emit_text(src_.substr(pos_, tag - pos_), sign, kind != TagKind::kVariable);
    line_ += count_newlines(std::string_view(src_).substr(pos_, tag - pos_));
    switch (kind) {
      case TagKind::kComment:
        pos_ = tag + 2 + (sign ? 1 : 0);
        return lex_comment();
      case TagKind::kRaw:
        pos_ = tag + raw_len;
        line_ += count_newlines(std::string_view(src_).substr(tag, raw_len));
        line_starting_ = src_[tag + raw_len - 1] == '\n';
        return lex_raw();
      case TagKind::kVariable:
      case TagKind::kBlock:
        pos_ = tag + 2 + (sign ? 1 : 0);
        return lex_tag(kind == TagKind::kBlock);
    }
    return ok_status();
  }

  // Consumes an end marker `-X}` (then whitespace), `+X}` (blocks only) or
  // `X}` (then one newline for blocks and comments: trim_blocks).
  bool match_end(char mark, bool trim, size_t* end) const {
    const std::string plain = std::string(1, mark) + "}";
    if (src_.compare(pos_, 3, "-" + plain) == 0) {
      *end = whitespace_run(src_, pos_ + 3);
      return true;
    }
    if (trim && src_.compare(pos_, 3, "+" + plain) == 0) {
      *end = pos_ + 3;
      return true;
    }
    if (src_.compare(pos_, 2, plain) == 0) {
      *end = pos_ + 2;
      if (trim && *end < src_.size() && src_[*end] == '\n') ++*end;
      return true;
    }
    return false;
  }

  void finish_match(size_t end) {
    line_ += count_newlines(std::string_view(src_).substr(pos_, end - pos_));
    line_starting_ = end > pos_ && src_[end - 1] == '\n';
    pos_ = end;
  }

  Status lex_comment() {
    const int start_line = line_;
    for (; pos_ < src_.size(); ) {
      size_t end;
      if (match_end('#', true, &end)) {
        finish_match(end);
        return ok_status();
      }
      line_ += src_[pos_] == '\n';
      ++pos_;
    }
    return syntax_error(start_line, "Missing end of comment tag");
  }

  Status lex_raw() {
    const int start_line = line_;
    for (size_t at = src_.find("{%", pos_); at != std::string::npos; at = src_.find("{%", at + 1)) {
      size_t i = at + 2;
      char sign = '\0';
      if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) sign = src_[i++];
      i = whitespace_run(src_, i);
      if (src_.compare(i, 6, "endraw") != 0) continue;
      i = whitespace_run(src_, i + 6);
      size_t end;
      if (src_.compare(i, 3, "+%}") == 0) {
        end = i + 3;
      } else if (src_.compare(i, 3, "-%}") == 0) {
        end = whitespace_run(src_, i + 3);
      } else if (src_.compare(i, 2, "%}") == 0) {
        end = i + 2;
        if (end < src_.size() && src_[end] == '\n') ++end;
      } else {
        continue;
      }
      emit_text(src_.substr(pos_, at - pos_), sign, true);
      line_ += count_newlines(std::string_view(src_).substr(pos_, at - pos_));
      pos_ = at;
      finish_match(end);
      return ok_status();
    }
    return syntax_error(start_line, "Missing end of raw directive");
  }

  Status lex_tag(bool block) {
    push(block ? TokenType::kBlockBegin : TokenType::kVariableBegin, "");
    std::vector<char> balance;
    while (pos_ < src_.size()) {
      size_t end;
      if (balance.empty() && match_end(block ? '%' : '}', block, &end)) {
        // Variables have no `+}}` form and do not trim a newline.
        push(block ? TokenType::kBlockEnd : TokenType::kVariableEnd, "");
        finish_match(end);
        return ok_status();
      }
      const size_t ws_end = whitespace_run(src_, pos_);
      if (ws_end > pos_) {
        line_ += count_newlines(std::string_view(src_).substr(pos_, ws_end - pos_));
        pos_ = ws_end;
        continue;
      }
      LS_RETURN_IF_ERROR(lex_expression_token(&balance));
    }
    return syntax_error(line_, "unexpected end of template");
  }

  Status lex_expression_token(std::vector<char>* balance) {
    const std::string_view s(src_);
    size_t end = match_float(s, pos_);
    if (end != std::string_view::npos) {
      std::string digits;
      for (size_t i = pos_; i < end; ++i) {
        if (s[i] != '_') digits.push_back(s[i]);
      }
      push(TokenType::kFloat, std::string(s.substr(pos_, end - pos_)));
      tokens_.back().float_value = std::strtod(digits.c_str(), nullptr);
      pos_ = end;
      return ok_status();
    }
    int base = 10;
    end = match_integer(s, pos_, &base);
    if (end != std::string_view::npos) {
      std::string digits;
      for (size_t i = pos_ + (base == 10 ? 0 : 2); i < end; ++i) {
        if (s[i] != '_') digits.push_back(s[i]);
      }
      errno = 0;
      const unsigned long long v = std::strtoull(digits.c_str(), nullptr, base);
      if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX)) {
        return syntax_error(line_, "integer literal too large: " + std::string(s.substr(pos_, end - pos_)));
      }
      push(TokenType::kInteger, std::string(s.substr(pos_, end - pos_)));
      tokens_.back().int_value = static_cast<int64_t>(v);
      pos_ = end;
      return ok_status();
    }
    size_t next = pos_;
    if (is_name_char(utf8_next(s, &next), true)) {
      end = next;
      while (end < s.size()) {
        size_t after = end;
        if (!is_name_char(utf8_next(s, &after), false)) break;
        end = after;
      }
      push(TokenType::kName, std::string(s.substr(pos_, end - pos_)));
      pos_ = end;
      return ok_status();
    }
    const char c = s[pos_];
    if (c == '\'' || c == '"') {
      size_t i = pos_ + 1;
      while (i < s.size() && s[i] != c) i += s[i] == '\\' ? 2 : 1;
      if (i < s.size()) {
        std::string value;
        const int line = line_;
        LS_RETURN_IF_ERROR(decode_string_body(s.substr(pos_ + 1, i - pos_ - 1), line, &value));
        push(TokenType::kString, std::move(value));
        line_ += count_newlines(s.substr(pos_, i + 1 - pos_));
        pos_ = i + 1;
        return ok_status();
      }
    }
    for (const char* op : kOperators) {
      const size_t len = std::char_traits<char>::length(op);
      if (s.compare(pos_, len, op) != 0) continue;
      if (len == 1) {
        if (c == '(' || c == '[' || c == '{') {
          balance->push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
        } else if (c == ')' || c == ']' || c == '}') {
          if (balance->empty()) return syntax_error(line_, std::string("unexpected '") + c + "'");
          const char expected = balance->back();
          balance->pop_back();
          if (expected != c) {
            return syntax_error(line_, std::string("unexpected '") + c + "', expected '" + expected + "'");
          }
        }
      }
      push(TokenType::kOperator, op);
      pos_ += len;
      return ok_status();
    }
    size_t cp_end = pos_;
    utf8_next(s, &cp_end);
    return syntax_error(line_, "unexpected char " + py_repr_string(s.substr(pos_, cp_end - pos_)));
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

StatusOr<std::vector<Token>> tokenize(std::string_view source) {
  if (!utf8_is_valid(source)) return invalid_argument("chat template is not valid UTF-8");
  Lexer lexer(normalize_source(source));
  return lexer.run();
}

}  // namespace jinja
}  // namespace loraserve
