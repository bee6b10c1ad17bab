// A small real tokenizer for synthetic models: byte-level BPE (GPT-2
// pre-tokenizer regex, ByteLevel decoder) trained deterministically on an
// embedded English corpus, its vocabulary exactly `vocab_size` ids.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace loraserve {

struct TrainedTokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};

// Layout: "<s>" at bos_id, "</s>" at eos_id, "<unk>" at the lowest free id,
// the 256 byte tokens at the next free ids, then BPE merges learned from the
// corpus (most frequent pair first, ties by lower ids) until the vocabulary
// is full; if the corpus runs out of pairs first, the remaining ids are
// special "<|reserved_N|>" tokens. Same arguments, same bytes.
StatusOr<TrainedTokenizerFiles> train_tokenizer(int64_t vocab_size, int64_t bos_id, int64_t eos_id,
                                              int64_t model_max_length);

// Writes DIR/tokenizer.json and DIR/tokenizer_config.json.
Status write_trained_tokenizer(const std::string& dir, int64_t vocab_size, int64_t bos_id,
                             int64_t eos_id, int64_t model_max_length);

// The embedded training corpus (English prose, ~6 KB), also used by tests
// and the tokenizer benchmark.
const std::string& tokenizer_training_corpus();

}  // namespace loraserve
