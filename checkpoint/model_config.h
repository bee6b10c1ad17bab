// The base model's architecture, read from a Hugging Face `config.json`.
// Supported families (`architectures[0]`, with the matching `model_type`):
//   LlamaForCausalLM   (llama)   Llama 2/3 (GQA, rope_scaling type "llama3")
//   MistralForCausalLM (mistral) sliding_window null or >= max positions
//                                (Mistral 7B v0.2+, Mistral-Nemo's head_dim)
//   Qwen2ForCausalLM   (qwen2)   Qwen2/Qwen2.5: bias on q/k/v_proj
//   Qwen3ForCausalLM   (qwen3)   per-head RMSNorm on q and k before RoPE
// Every family takes an explicit `head_dim` (q/o projections of
// num_attention_heads * head_dim, which may differ from hidden_size).
// Anything else is refused with a message naming the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "kernels/rope/rope.h"

namespace loraserve {

enum class ModelFamily { kLlama, kMistral, kQwen2, kQwen3 };

struct ModelConfig {
  ModelFamily family = ModelFamily::kLlama;
  std::string model_type;  // "llama", "mistral", "qwen2" or "qwen3"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;   // defaults to num_attention_heads
  int64_t head_dim = 0;              // defaults to hidden_size / num_attention_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<kernels::Llama3RopeScaling> rope_scaling;  // only type "llama3"
  bool tie_word_embeddings = false;
  int64_t bos_token_id = -1;         // -1 when absent
  int64_t eos_token_id = -1;         // first one when config lists several
  std::string torch_dtype;           // informational ("bfloat16", ...)

  // What the family puts in each decoder layer beyond Llama's tensors.
  // Qwen2: self_attn.{q,k,v}_proj.bias. Qwen3: self_attn.{q,k}_norm.weight.
  bool qkv_bias() const { return family == ModelFamily::kQwen2; }
  bool qk_norm() const { return family == ModelFamily::kQwen3; }
  // "LlamaForCausalLM", ... (what to_json_text writes in `architectures`).
  const char* architecture() const;

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }

  // Parses and validates; INVALID_ARGUMENT / UNIMPLEMENTED naming the field.
  static StatusOr<ModelConfig> from_json_text(const std::string& text);
  static StatusOr<ModelConfig> from_file(const std::string& path);
  std::string to_json_text() const;  // HF-style config.json, round-trips
};

}  // namespace loraserve
