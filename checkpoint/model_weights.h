// A Hugging Face Llama-family checkpoint on disk: config.json plus either one
// model.safetensors or shards listed by model.safetensors.index.json.
// Tensors stay in the mmapped files (bf16 as stored); backends convert them
// to their own layout once when the model is uploaded.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "checkpoint/model_config.h"
#include "checkpoint/safetensors.h"

namespace loraserve {

// Host views of one decoder layer's tensors (HF names in comments).
struct LayerTensors {
  const TensorInfo* input_layernorm = nullptr;           // [hidden]
  const TensorInfo* q_proj = nullptr;                    // [q_dim, hidden]
  const TensorInfo* k_proj = nullptr;                    // [kv_dim, hidden]
  const TensorInfo* v_proj = nullptr;                    // [kv_dim, hidden]
  const TensorInfo* o_proj = nullptr;                    // [hidden, q_dim]
  const TensorInfo* post_attention_layernorm = nullptr;  // [hidden]
  const TensorInfo* gate_proj = nullptr;                 // [inter, hidden]
  const TensorInfo* up_proj = nullptr;                   // [inter, hidden]
  const TensorInfo* down_proj = nullptr;                 // [hidden, inter]
  // Family extras (null when the family has none):
  const TensorInfo* q_bias = nullptr;  // Qwen2 self_attn.q_proj.bias [q_dim]
  const TensorInfo* k_bias = nullptr;  // Qwen2 self_attn.k_proj.bias [kv_dim]
  const TensorInfo* v_bias = nullptr;  // Qwen2 self_attn.v_proj.bias [kv_dim]
  const TensorInfo* q_norm = nullptr;  // Qwen3 self_attn.q_norm.weight [head_dim]
  const TensorInfo* k_norm = nullptr;  // Qwen3 self_attn.k_norm.weight [head_dim]
};

class ModelWeights {
 public:
  // Opens DIR/config.json and the checkpoint; validates that every expected
  // tensor exists with the shape the config implies (message names the
  // tensor) and that no unexpected tensor is present except rotary caches.
  static StatusOr<std::unique_ptr<ModelWeights>> open(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  const TensorInfo* embed_tokens() const { return embed_tokens_; }  // [vocab, hidden]
  const TensorInfo* final_norm() const { return final_norm_; }      // [hidden]
  // [vocab, hidden]; the embedding table when tie_word_embeddings.
  const TensorInfo* lm_head() const { return lm_head_; }
  const std::vector<LayerTensors>& layers() const { return layers_; }

 private:
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  const TensorInfo* embed_tokens_ = nullptr;
  const TensorInfo* final_norm_ = nullptr;
  const TensorInfo* lm_head_ = nullptr;
  std::vector<LayerTensors> layers_;
};

}  // namespace loraserve
