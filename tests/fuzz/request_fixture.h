// What the two request fuzzers (gRPC and OpenAI) check requests against: a
// tiny Llama shape with a 1024-token vocabulary and a byte-level tokenizer
// trained for it, both built once per process.
#pragma once

#include <memory>

#include "tests/support/tiny_model_config.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_train.h"

namespace loraserve {

inline const ModelConfig& fuzz_model_config() {
  static const ModelConfig config = [] {
    ModelConfig c = tiny_llama_config(/*vocab_size=*/1024, /*max_positions=*/2048);
    c.eos_token_id = 2;
    return c;
  }();
  return config;
}

inline const Tokenizer* fuzz_tokenizer() {
  static const std::shared_ptr<const Tokenizer> tok = [] {
    auto f = train_tokenizer(1024, 1, 2, 2048);
    return *Tokenizer::from_json_text(f->tokenizer_json, f->tokenizer_config_json);
  }();
  return tok.get();
}

}  // namespace loraserve
