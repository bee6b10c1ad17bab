// Tokenizer: encode (added tokens, normalizer, pre-tokenizer, BPE,
// post-processor) and decode.
#include "tokenizer/tokenizer.h"

#include <utf8proc.h>

#include <cstdlib>

#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace loraserve {

using tokenizer_internal::AddedToken;
using tokenizer_internal::NormStep;
using tokenizer_internal::PreStep;
using tokenizer_internal::SplitBehavior;
using tokenizer_internal::TokenizerImpl;

namespace {

const char kMetaspace[] = "\xE2\x96\x81";

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool is_word_byte(unsigned char c) {
  return c >= 0x80 || std::isalnum(c) || c == '_';
}

std::string utf8proc_apply(const std::string& s, NormStep::Kind kind) {
  bool ascii = true;
  for (char c : s) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (kind == NormStep::kLowercase) {
    std::string out;
    out.reserve(s.size());
    if (ascii) {
      for (char c : s) out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      return out;
    }
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
    utf8proc_ssize_t i = 0, n = static_cast<utf8proc_ssize_t>(s.size());
    while (i < n) {
      utf8proc_int32_t cp;
      utf8proc_ssize_t k = utf8proc_iterate(p + i, n - i, &cp);
      if (k <= 0) break;
      utf8proc_uint8_t buf[4];
      utf8proc_ssize_t m = utf8proc_encode_char(utf8proc_tolower(cp), buf);
      out.append(reinterpret_cast<char*>(buf), static_cast<size_t>(m));
      i += k;
    }
    return out;
  }
  if (ascii) return s;  // ASCII is invariant under every normal form
  int opts = UTF8PROC_STABLE;
  if (kind == NormStep::kNfc || kind == NormStep::kNfkc) opts |= UTF8PROC_COMPOSE;
  if (kind == NormStep::kNfd || kind == NormStep::kNfkd) opts |= UTF8PROC_DECOMPOSE;
  if (kind == NormStep::kNfkc || kind == NormStep::kNfkd) opts |= UTF8PROC_COMPAT;
  utf8proc_uint8_t* dst = nullptr;
  utf8proc_ssize_t m = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                    static_cast<utf8proc_ssize_t>(s.size()), &dst,
                                    static_cast<utf8proc_option_t>(opts));
  if (m < 0 || dst == nullptr) return s;
  std::string out(reinterpret_cast<char*>(dst), static_cast<size_t>(m));
  std::free(dst);
  return out;
}

void normalize(const std::vector<NormStep>& steps, std::string* s) {
  for (const NormStep& st : steps) {
    switch (st.kind) {
      case NormStep::kPrepend:
        if (!s->empty()) s->insert(0, st.text);
        break;
      case NormStep::kReplace: {
        auto hits = st.pattern.find_all(*s);
        if (hits.empty()) break;
        std::string r;
        size_t pos = 0;
        for (auto [b, e] : hits) {
          r.append(*s, pos, b - pos);
          r += st.text;
          pos = e;
        }
        r.append(*s, pos, std::string::npos);
        *s = std::move(r);
        break;
      }
      case NormStep::kStrip: {
        size_t b = 0, e = s->size();
        if (st.strip_left) while (b < e && is_ascii_space((*s)[b])) ++b;
        if (st.strip_right) while (e > b && is_ascii_space((*s)[e - 1])) --e;
        *s = s->substr(b, e - b);
        break;
      }
      default:
        *s = utf8proc_apply(*s, st.kind);
    }
  }
}

// Cuts `w` by match ranges according to HF's SplitDelimiterBehavior.
void split_word(const std::string& w, const std::vector<std::pair<size_t, size_t>>& hits,
                SplitBehavior behavior, bool invert, std::vector<std::string>* out) {
  struct Piece {
    size_t b, e;
    bool match;
  };
  std::vector<Piece> pieces;
  size_t pos = 0;
  for (auto [b, e] : hits) {
    if (b > pos) pieces.push_back({pos, b, invert});
    pieces.push_back({b, e, !invert});
    pos = e;
  }
  if (pos < w.size()) pieces.push_back({pos, w.size(), invert});
  std::vector<Piece> res;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Piece& p : pieces) {
        if (!p.match) res.push_back(p);
      }
      break;
    case SplitBehavior::kIsolated:
      res.swap(pieces);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool prev = false;
      for (const Piece& p : pieces) {
        if (p.match && !prev && !res.empty()) {
          res.back().e = p.e;
        } else {
          res.push_back(p);
        }
        prev = p.match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool prev = false;
      for (size_t k = pieces.size(); k-- > 0;) {
        const Piece& p = pieces[k];
        if (p.match && !prev && !res.empty()) {
          res.back().b = p.b;
        } else {
          res.push_back(p);
        }
        prev = p.match;
      }
      std::reverse(res.begin(), res.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool prev = false;
      for (const Piece& p : pieces) {
        if (p.match && prev) {
          res.back().e = p.e;
        } else {
          res.push_back(p);
        }
        prev = p.match;
      }
      break;
    }
  }
  for (const Piece& p : res) {
    if (p.e > p.b) out->emplace_back(w, p.b, p.e - p.b);
  }
}

void pre_tokenize(const TokenizerImpl& impl, bool at_start, std::vector<std::string>* words) {
  std::vector<std::string> next;
  for (const PreStep& st : impl.pre_tokenizers) {
    next.clear();
    for (size_t wi = 0; wi < words->size(); ++wi) {
      std::string& w = (*words)[wi];
      switch (st.kind) {
        case PreStep::kSplit:
          split_word(w, st.pattern.find_all(w), st.behavior, st.invert, &next);
          break;
        case PreStep::kByteLevel:
          if (st.add_prefix_space && (w.empty() || w[0] != ' ')) w.insert(0, " ");
          if (st.use_regex) {
            split_word(w, st.regex ? tokenizer_internal::Pattern{"", st.regex}.find_all(w)
                                   : std::vector<std::pair<size_t, size_t>>{},
                       SplitBehavior::kIsolated, false, &next);
          } else {
            next.push_back(std::move(w));
          }
          break;
        case PreStep::kMetaspace: {
          std::string r;
          r.reserve(w.size() + 8);
          for (char c : w) {
            if (c == ' ') {
              r += st.replacement;
            } else {
              r.push_back(c);
            }
          }
          const bool prepend = st.prepend == PreStep::kAlways ||
                               (st.prepend == PreStep::kFirst && at_start && wi == 0);
          if (prepend && r.compare(0, st.replacement.size(), st.replacement) != 0) {
            r.insert(0, st.replacement);
          }
          if (st.split) {
            tokenizer_internal::Pattern p{st.replacement, nullptr};
            split_word(r, p.find_all(r), SplitBehavior::kMergedWithNext, false, &next);
          } else {
            next.push_back(std::move(r));
          }
          break;
        }
      }
    }
    words->swap(next);
  }
}

void encode_segment(const TokenizerImpl& impl, std::string text, bool at_start,
                    std::vector<int32_t>* out) {
  normalize(impl.normalizers, &text);
  if (text.empty()) return;
  std::vector<std::string> words;
  words.push_back(std::move(text));
  pre_tokenize(impl, at_start, &words);
  for (const std::string& w : words) {
    if (!impl.split_before_metaspace) {
      impl.model.encode_word(w, out);
      continue;
    }
    // Cut before each '▁' run that follows another character.
    size_t start = 0;
    size_t p = w.find(kMetaspace, 1);
    while (p != std::string::npos) {
      if (p < 3 || w.compare(p - 3, 3, kMetaspace) != 0) {
        impl.model.encode_word(std::string_view(w).substr(start, p - start), out);
        start = p;
      }
      p = w.find(kMetaspace, p + 3);
    }
    impl.model.encode_word(std::string_view(w).substr(start), out);
  }
}

}  // namespace

// ---- Tokenizer ----

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

StatusOr<std::vector<int32_t>> Tokenizer::encode(std::string_view text,
                                                 bool add_special_tokens) const {
  size_t bad = 0;
  if (!utf8_valid(text, &bad)) {
    return invalid_argument("text is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
  }
  const TokenizerImpl& t = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special_tokens) out = t.prefix_ids;
  size_t seg_start = 0, i = 0;
  const size_t n = text.size();
  while (i < n) {
    if (!t.added_first_byte[static_cast<uint8_t>(text[i])]) {
      ++i;
      continue;
    }
    const AddedToken* hit = nullptr;
    for (size_t len : t.added_lengths) {
      if (i + len > n) continue;
      auto it = t.added_by_content.find(std::string(text.substr(i, len)));
      if (it == t.added_by_content.end()) continue;
      const AddedToken& a = t.added[it->second];
      if (a.single_word && ((i > 0 && is_word_byte(static_cast<unsigned char>(text[i - 1]))) ||
                            (i + len < n && is_word_byte(static_cast<unsigned char>(text[i + len]))))) {
        continue;
      }
      hit = &a;
      break;
    }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    size_t mb = i, me = i + hit->content.size();
    if (hit->lstrip) while (mb > seg_start && is_ascii_space(text[mb - 1])) --mb;
    if (hit->rstrip) while (me < n && is_ascii_space(text[me])) ++me;
    if (mb > seg_start) {
      encode_segment(t, std::string(text.substr(seg_start, mb - seg_start)), seg_start == 0, &out);
    }
    out.push_back(hit->id);
    seg_start = i = me;
  }
  if (seg_start < n) {
    encode_segment(t, std::string(text.substr(seg_start)), seg_start == 0, &out);
  }
  if (add_special_tokens) out.insert(out.end(), t.suffix_ids.begin(), t.suffix_ids.end());
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, const DecodeOptions& opts) const {
  std::string bytes;
  bool first = !opts.continuation;
  for (int32_t id : ids) {
    if (!is_valid_id(id)) continue;
    if (opts.skip_special_tokens && impl_->id_special[static_cast<size_t>(id)]) continue;
    bytes += id_bytes(id, first);
    first = false;
  }
  size_t skip = 0;
  if (!opts.continuation) {
    while (skip < bytes.size() && skip < static_cast<size_t>(impl_->leading_strip) &&
           bytes[skip] == ' ') {
      ++skip;
    }
  }
  return utf8_lossy(std::string_view(bytes).substr(skip));
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_valid.size()); }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::is_valid_id(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_valid.size() &&
         impl_->id_valid[static_cast<size_t>(id)];
}
bool Tokenizer::is_special(int32_t id) const {
  return is_valid_id(id) && impl_->id_special[static_cast<size_t>(id)];
}
std::string Tokenizer::id_to_token(int32_t id) const {
  return is_valid_id(id) ? impl_->id_token[static_cast<size_t>(id)] : std::string();
}
std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->token_to_id.find(std::string(token));
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}
const std::string& Tokenizer::id_bytes(int32_t id, bool first) const {
  static const std::string kEmpty;
  if (!is_valid_id(id)) return kEmpty;
  const size_t i = static_cast<size_t>(id);
  return first && !impl_->id_bytes_first.empty() ? impl_->id_bytes_first[i] : impl_->id_bytes[i];
}
int Tokenizer::leading_strip() const { return impl_->leading_strip; }

}  // namespace loraserve
