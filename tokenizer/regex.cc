// PCRE2 wrapper and the GPT-2 byte <-> character mapping.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>

#include "tokenizer/tokenizer_impl.h"

namespace loraserve::tokenizer_internal {

const char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

StatusOr<std::shared_ptr<Regex>> Regex::compile(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    return invalid_argument("regex \"" + pattern + "\" does not compile (PCRE2 at offset " +
                            std::to_string(err_off) + ": " + reinterpret_cast<char*>(buf) + ")");
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  std::shared_ptr<Regex> r(new Regex());
  r->code_ = code;
  return r;
}

Regex::~Regex() {
  if (code_ != nullptr) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

void Regex::for_each_match(std::string_view text,
                           const std::function<void(size_t, size_t)>& fn) const {
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create(4, nullptr);
  if (md == nullptr) return;
  size_t pos = 0;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  while (pos <= text.size()) {
    int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) break;  // no match (or a match-limit error: the rest is one gap)
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t b = ov[0], e = ov[1];
    if (e > b) {
      fn(b, e);
      pos = e;
    } else {
      if (b >= text.size()) break;
      pos = b + utf8_char_len(static_cast<unsigned char>(text[b]));
    }
  }
  pcre2_match_data_free(md);
}

std::vector<std::pair<size_t, size_t>> Pattern::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  if (regex) {
    regex->for_each_match(text, [&](size_t b, size_t e) { out.emplace_back(b, e); });
  } else if (!literal.empty()) {
    size_t pos = 0;
    while ((pos = text.find(literal, pos)) != std::string_view::npos) {
      out.emplace_back(pos, pos + literal.size());
      pos += literal.size();
    }
  }
  return out;
}

namespace {

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

struct ByteMap {
  std::array<std::string, 256> to_char;
  std::unordered_map<uint32_t, uint8_t> from_cp;
  ByteMap() {
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      uint32_t cp = keep ? b : 256 + n++;
      append_utf8(cp, &to_char[b]);
      from_cp[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

const std::string& byte_to_char_utf8(uint8_t b) { return byte_map().to_char[b]; }

bool byte_level_to_bytes(std::string_view token, std::string* bytes) {
  const ByteMap& m = byte_map();
  bytes->clear();
  size_t i = 0;
  while (i < token.size()) {
    unsigned char c = static_cast<unsigned char>(token[i]);
    size_t n = utf8_char_len(c);
    if (i + n > token.size()) return false;
    uint32_t cp;
    if (n == 1) {
      cp = c;
    } else if (n == 2) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(token[i + 1]) & 0x3Fu);
    } else if (n == 3) {
      cp = ((c & 0x0Fu) << 12) | ((static_cast<unsigned char>(token[i + 1]) & 0x3Fu) << 6) |
           (static_cast<unsigned char>(token[i + 2]) & 0x3Fu);
    } else {
      return false;
    }
    auto it = m.from_cp.find(cp);
    if (it == m.from_cp.end()) return false;
    bytes->push_back(static_cast<char>(it->second));
    i += n;
  }
  return true;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  for (char c : bytes) out += byte_to_char_utf8(static_cast<uint8_t>(c));
  return out;
}

}  // namespace loraserve::tokenizer_internal
