// The smallest Llama shape the checkpoint, adapter and request tests share:
// hidden 16, 4 heads of 4 with 2 KV heads (q 16, kv 8), intermediate 24,
// 2 layers. Header-only and gtest-free, so the fuzz targets use it too.
#pragma once

#include <cstdint>

#include "checkpoint/model_config.h"

namespace loraserve {

inline ModelConfig tiny_llama_config(int64_t vocab_size = 32, int64_t max_positions = 64) {
  ModelConfig c;
  c.model_type = "llama";
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.vocab_size = vocab_size;
  c.max_position_embeddings = max_positions;
  return c;
}

}  // namespace loraserve
