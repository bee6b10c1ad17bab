// A small real tokenizer for synthetic models: byte-level BPE (GPT-2 or
// Qwen pre-tokenizer regex, ByteLevel decoder) trained deterministically on
// an embedded English corpus, its vocabulary exactly `vocab_size` ids, with
// the special tokens of the model family (Llama or Qwen's ChatML).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace loraserve {

struct TrainedTokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};

// The special tokens, pre-tokenizer and tokenizer_config of a model family.
enum class TokenizerStyle {
  // Llama: "<s>" at bos_id (added before every encoded text), "</s>" at
  // eos_id, "<unk>" at the lowest free id; GPT-2 regex + ByteLevel.
  kLlama,
  // Qwen2/Qwen3: "<|endoftext|>" at bos_id (never added: bos_token null),
  // "<|im_start|>" at eos_id - 1 and "<|im_end|>" at eos_id (the eos_token);
  // NFC, Qwen's Split regex then ByteLevel; a ChatML chat_template and
  // tokenizer_class Qwen2Tokenizer in tokenizer_config.json.
  kChatMl,
};

struct TokenizerTrainOptions {
  int64_t vocab_size = 0;
  int64_t bos_id = 0;
  int64_t eos_id = 0;
  int64_t model_max_length = 0;
  TokenizerStyle style = TokenizerStyle::kLlama;
};

// The ChatML template Qwen2/Qwen3 checkpoints carry (messages as
// <|im_start|>role\ncontent<|im_end|>\n, then the assistant's turn).
extern const char kChatMlTemplate[];

// Layout: the style's special tokens at their ids, the 256 byte tokens at
// the lowest free ids, then BPE merges learned from the corpus (most
// frequent pair first, ties by lower ids) until the vocabulary is full; if
// the corpus runs out of pairs first, the remaining ids are special
// "<|reserved_N|>" tokens. Same arguments, same bytes.
StatusOr<TrainedTokenizerFiles> train_tokenizer(const TokenizerTrainOptions& options);
// The Llama style.
StatusOr<TrainedTokenizerFiles> train_tokenizer(int64_t vocab_size, int64_t bos_id, int64_t eos_id,
                                              int64_t model_max_length);

// Writes DIR/tokenizer.json and DIR/tokenizer_config.json.
Status write_trained_tokenizer(const std::string& dir, const TokenizerTrainOptions& options);
Status write_trained_tokenizer(const std::string& dir, int64_t vocab_size, int64_t bos_id,
                             int64_t eos_id, int64_t model_max_length);

// The embedded training corpus (English prose, ~6 KB), also used by tests
// and the tokenizer benchmark.
const std::string& tokenizer_training_corpus();

}  // namespace loraserve
