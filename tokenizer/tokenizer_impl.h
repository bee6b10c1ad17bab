// Internals of tokenizer/tokenizer.h: the parsed pipeline (normalizer,
// pre-tokenizer, BPE model, decoder table) and the PCRE2 wrapper. Only the
// tokenizer_*.cc files and the synth trainer include this.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace loraserve::tokenizer_internal {

// The GPT-2 pre-tokenizer regex (ByteLevel with use_regex).
extern const char kGpt2Pattern[];

// A compiled PCRE2 pattern (UTF, UCP, JIT when available). Immutable and
// shareable across threads; each call allocates its own match data.
class Regex {
 public:
  static StatusOr<std::shared_ptr<Regex>> compile(const std::string& pattern);
  ~Regex();
  // Calls fn(begin, end) for each non-overlapping match, left to right. An
  // empty match is skipped by one character. `text` must be valid UTF-8.
  void for_each_match(std::string_view text,
                      const std::function<void(size_t, size_t)>& fn) const;

 private:
  Regex() = default;
  void* code_ = nullptr;  // pcre2_code_8*
};

// A Split/Replace pattern: a literal string or a regex.
struct Pattern {
  std::string literal;
  std::shared_ptr<Regex> regex;  // set for {"Regex": ...}
  // Match ranges in `text`.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct NormStep {
  enum Kind { kPrepend, kReplace, kNfc, kNfd, kNfkc, kNfkd, kLowercase, kStrip } kind;
  std::string text;  // Prepend text / Replace content
  Pattern pattern;   // Replace
  bool strip_left = false, strip_right = false;
};

struct PreStep {
  enum Kind { kSplit, kByteLevel, kMetaspace } kind;
  Pattern pattern;  // Split
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
  bool use_regex = true;          // ByteLevel
  std::shared_ptr<Regex> regex;   // ByteLevel GPT-2 regex
  std::string replacement;        // Metaspace
  enum Prepend { kAlways, kFirst, kNever } prepend = kAlways;
  bool split = true;              // Metaspace
};

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// The BPE model over bytes (ByteLevel: one initial symbol per byte) or over
// UTF-8 characters (SentencePiece style, with <0xHH> byte fallback).
class BpeModel {
 public:
  // vocab: key -> id, where key is the token's bytes as the model sees its
  // input (ByteLevel keys are already mapped back to raw bytes).
  std::unordered_map<std::string, int32_t> vocab;
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  std::unordered_map<uint64_t, Merge> merges;
  bool byte_level = false;
  bool byte_fallback = false;
  int32_t byte_ids[256];
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
  bool ignore_merges = false;
  size_t cache_capacity = 1 << 16;

  BpeModel() {
    for (int32_t& b : byte_ids) b = -1;
  }
  // Appends the ids of one pre-token word.
  void encode_word(std::string_view word, std::vector<int32_t>* out) const;
  // Uncached merge loop (the cache calls it; tests may too).
  void encode_word_uncached(std::string_view word, std::vector<int32_t>* out) const;

 private:
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

struct TokenizerImpl {
  std::vector<NormStep> normalizers;
  std::vector<PreStep> pre_tokenizers;
  BpeModel model;
  // Split SentencePiece words before each '▁' that follows another
  // character: exact when no vocabulary token has '▁' after a non-'▁'.
  bool split_before_metaspace = false;

  std::vector<AddedToken> added;  // sorted by nothing in particular
  // Added-token lookup: content -> index into `added`, by length.
  std::unordered_map<std::string, size_t> added_by_content;
  std::vector<size_t> added_lengths;  // distinct, descending
  bool added_first_byte[256] = {};

  // Per id: the string in tokenizer.json, the decoded bytes, flags.
  std::vector<std::string> id_token;
  std::vector<std::string> id_bytes;
  std::vector<uint8_t> id_valid;
  std::vector<uint8_t> id_special;
  int leading_strip = 0;
  // Decoded bytes of an id as the first token of a decode, where that
  // differs (Metaspace decoder); empty when it never does.
  std::vector<std::string> id_bytes_first;

  std::vector<int32_t> prefix_ids, suffix_ids;  // added with add_special_tokens
  std::optional<int32_t> bos, eos;
  std::unordered_map<std::string, int32_t> token_to_id;  // tokenizer.json strings
};

// Loads and validates; fills every field of TokenizerImpl.
// A special token in tokenizer.json / tokenizer_config.json: a string, or an
// AddedToken dict {"content": ...}; nullopt for anything else.
std::optional<std::string> token_content(const nlohmann::json& j);

StatusOr<std::unique_ptr<TokenizerImpl>> parse_tokenizer(std::string_view tokenizer_json,
                                                         std::string_view config_json);

// GPT-2 byte <-> printable-char mapping (ByteLevel).
const std::string& byte_to_char_utf8(uint8_t b);
// Maps a ByteLevel vocabulary string back to bytes; false if a character is
// outside the mapping.
bool byte_level_to_bytes(std::string_view token, std::string* bytes);
// Raw bytes to the ByteLevel alphabet (for writing vocabularies).
std::string bytes_to_byte_level(std::string_view bytes);

// Length of the UTF-8 character starting with lead byte c (1 for invalid).
inline size_t utf8_char_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}

}  // namespace loraserve::tokenizer_internal
