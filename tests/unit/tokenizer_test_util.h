// Small tokenizer.json builders for the tokenizer tests: one byte-level
// (GPT-2 / Llama 3 style) and one SentencePiece-style BPE with byte fallback.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "tokenizer/tokenizer_impl.h"

namespace loraserve::testing_tok {

using json = nlohmann::ordered_json;

inline std::string bl(const std::string& raw) {
  return tokenizer_internal::bytes_to_byte_level(raw);
}

// Byte-level: byte b has id b (its GPT-2 character), merges add ids from 256;
// specials <s>=300, </s>=301 and a non-special "<|tool|>" (302, lstrip+rstrip).
inline json byte_level_json(const std::vector<std::pair<std::string, std::string>>& merges_raw,
                            bool llama3_split = false) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[bl(std::string(1, static_cast<char>(b)))] = b;
  json merges = json::array();
  int next = 256;
  for (const auto& [a, b] : merges_raw) {
    merges.push_back(bl(a) + " " + bl(b));
    if (!vocab.contains(bl(a + b))) vocab[bl(a + b)] = next++;
  }
  // Hugging Face numbers added tokens after the model vocab, whatever ids
  // the file writes: fill the vocab up to the specials' ids.
  while (next < 300) vocab["<unused_" + std::to_string(next) + ">"] = next, ++next;
  json pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
              {"use_regex", true}};
  if (llama3_split) {
    pre = {{"type", "Sequence"},
           {"pretokenizers",
            json::array(
                {{{"type", "Split"},
                  {"pattern",
                   {{"Regex",
                     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
                  {"behavior", "Isolated"},
                  {"invert", false}},
                 {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
  }
  return {{"version", "1.0"},
          {"added_tokens",
           json::array({{{"id", 300}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
                        {{"id", 301}, {"content", "</s>"}, {"special", true}, {"normalized", false}},
                        {{"id", 302},
                         {"content", "<|tool|>"},
                         {"special", false},
                         {"lstrip", true},
                         {"rstrip", true},
                         {"normalized", false}}})},
          {"normalizer", nullptr},
          {"pre_tokenizer", pre},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                    {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {300}}, {"tokens", {"<s>"}}}}}}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"},
            {"byte_fallback", false},
            {"ignore_merges", llama3_split},
            {"vocab", vocab},
            {"merges", merges}}}};
}

inline const char* kMeta = "\xE2\x96\x81";

// SentencePiece style: <unk> 0, <s> 1, </s> 2, <0xHH> 3..258, then the
// characters and merges given (pieces spelled with '▁').
inline json sentencepiece_json(const std::vector<std::string>& chars,
                               const std::vector<std::pair<std::string, std::string>>& merges_in,
                               bool metaspace_pretok = false) {
  json vocab = json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    vocab[buf] = 3 + b;
  }
  int next = 259;
  for (const std::string& c : chars) {
    if (!vocab.contains(c)) vocab[c] = next++;
  }
  json merges = json::array();
  for (const auto& [a, b] : merges_in) {
    merges.push_back(json::array({a, b}));
    if (!vocab.contains(a + b)) vocab[a + b] = next++;
  }
  json normalizer = {{"type", "Sequence"},
                     {"normalizers",
                      json::array({{{"type", "Prepend"}, {"prepend", kMeta}},
                                   {{"type", "Replace"},
                                    {"pattern", {{"String", " "}}},
                                    {"content", kMeta}}})}};
  json pre = nullptr;
  json decoder = {{"type", "Sequence"},
                  {"decoders",
                   json::array({{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}},
                                {{"type", "ByteFallback"}},
                                {{"type", "Fuse"}},
                                {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  if (metaspace_pretok) {
    normalizer = nullptr;
    pre = {{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "first"}, {"split", false}};
  }
  return {{"version", "1.0"},
          {"added_tokens",
           json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}, {"normalized", false}},
                        {{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
                        {{"id", 2}, {"content", "</s>"}, {"special", true}, {"normalized", false}}})},
          {"normalizer", normalizer},
          {"pre_tokenizer", pre},
          {"post_processor", nullptr},
          {"decoder", decoder},
          {"model",
           {{"type", "BPE"},
            {"unk_token", "<unk>"},
            {"fuse_unk", true},
            {"byte_fallback", true},
            {"vocab", vocab},
            {"merges", merges}}}};
}

inline std::string sp_config() {
  return R"({"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>",
             "eos_token": {"content": "</s>", "special": true}, "unk_token": "<unk>"})";
}

}  // namespace loraserve::testing_tok
