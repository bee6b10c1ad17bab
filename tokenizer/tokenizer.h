// Hugging Face tokenizer.json: text <-> token ids, and incremental
// detokenization for streamed generations.
//
// Supported (anything else is refused at load with INVALID_ARGUMENT or
// UNIMPLEMENTED naming the component, e.g. "model.type WordPiece"):
//   model       BPE: vocab, merges ("a b" strings or ["a","b"] pairs),
//               byte_fallback, unk_token, fuse_unk, ignore_merges.
//               (dropout > 0, continuing_subword_prefix, end_of_word_suffix
//               are refused.)
//   normalizer  null, Sequence, Prepend, Replace (String or Regex), NFC,
//               NFD, NFKC, NFKD, Lowercase, Strip.
//   pre_tokenizer null, Sequence, Split (String or Regex; Isolated, Removed,
//               MergedWithPrevious, MergedWithNext, Contiguous; invert),
//               ByteLevel (add_prefix_space, use_regex = the GPT-2 regex;
//               must be the last step), Metaspace (replacement,
//               prepend_scheme always/first/never or legacy add_prefix_space,
//               split), Digits.
//   decoder     ByteLevel; Sequence of Replace (String), ByteFallback, Fuse,
//               Strip (content " ", after Fuse, stop 0); Metaspace (treated
//               as Replace(replacement, " ") + Strip(1) when it prepends).
//   post_processor null, ByteLevel, TemplateProcessing (single template),
//               Sequence of those. tokenizer_config.json add_bos_token /
//               add_eos_token, when present, replace the template.
//   added_tokens matched on the raw input before normalization, leftmost
//               longest; lstrip/rstrip eat whitespace beside the match;
//               single_word requires non-word characters (ASCII
//               alphanumerics, '_' and any non-ASCII byte count as word)
//               on both sides. normalized=true tokens are matched on the raw
//               text too (exact whenever the normalizer leaves the token's
//               own text unchanged, as for every <...> style token).
// Regexes are PCRE2 (UTF + UCP, JIT); Oniguruma-specific syntax that PCRE2
// rejects is reported as INVALID_ARGUMENT with the pattern.
//
// Decoding follows HF's decoder chain (tokens -> bytes, concatenated, then
// the leading Strip, then UTF-8). Invalid UTF-8 becomes U+FFFD per maximal
// invalid subpart (Rust's from_utf8_lossy, as HF's ByteLevel decoder does);
// HF's ByteFallback decoder instead emits one U+FFFD per byte of an invalid
// run of <0xHH> tokens, so the count of U+FFFD can differ there.
//
// Thread-safety: a loaded Tokenizer is immutable except for an internal
// word cache guarded by a mutex; encode/decode may be called from any
// number of threads. StreamDecoder is per stream and not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace loraserve {

namespace tokenizer_internal {
struct TokenizerImpl;
}

struct DecodeOptions {
  // Drop added tokens marked special (bos, eos, <|...|>).
  bool skip_special_tokens = false;
  // The ids continue earlier text (e.g. generated tokens after a prompt):
  // do not apply the decoder's leading-space Strip (SentencePiece '▁').
  bool continuation = false;
};

class Tokenizer {
 public:
  // Reads a tokenizer.json, and tokenizer_config.json from the same folder
  // when it exists.
  static StatusOr<std::shared_ptr<const Tokenizer>> load(const std::string& tokenizer_json_path);
  // DIR/tokenizer.json (+ DIR/tokenizer_config.json): a HF model folder.
  static StatusOr<std::shared_ptr<const Tokenizer>> load_dir(const std::string& model_dir);
  // From file contents; `tokenizer_config_json` may be empty.
  static StatusOr<std::shared_ptr<const Tokenizer>> from_json_text(
      std::string_view tokenizer_json, std::string_view tokenizer_config_json = {});

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Text (valid UTF-8, else INVALID_ARGUMENT) to ids. With
  // add_special_tokens, the post-processor's (or tokenizer_config's
  // add_bos_token / add_eos_token) bos/eos are added.
  StatusOr<std::vector<int32_t>> encode(std::string_view text,
                                        bool add_special_tokens = false) const;

  // Ids to text (always valid UTF-8). Unknown ids are skipped, as HF does.
  std::string decode(const std::vector<int32_t>& ids, const DecodeOptions& opts = {}) const;

  // One more than the largest id of the model vocabulary or added tokens.
  int32_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  // The vocabulary string of an id (as written in tokenizer.json), "" if none.
  std::string id_to_token(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  bool is_valid_id(int32_t id) const;
  bool is_special(int32_t id) const;
  // The raw bytes this id decodes to (before the leading Strip and UTF-8
  // repair); "" for unknown ids. `first`: as the first token of a text,
  // which differs under a Metaspace decoder (its '▁'s are dropped, as
  // Hugging Face does). StreamDecoder builds on it.
  const std::string& id_bytes(int32_t id, bool first = false) const;
  // Leading spaces the decoder strips from the start of a text (0 or 1).
  int leading_strip() const;

 private:
  explicit Tokenizer(std::unique_ptr<tokenizer_internal::TokenizerImpl> impl);
  std::unique_ptr<tokenizer_internal::TokenizerImpl> impl_;
};

}  // namespace loraserve
