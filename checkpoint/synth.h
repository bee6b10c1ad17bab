// Deterministic synthetic checkpoints: a Hugging Face Llama-family model
// (Llama, Mistral, Qwen2, Qwen3; bf16) and
// PEFT LoRA adapters with non-zero random A and B, at real shapes. No
// weights can be downloaded where loraserve is built, so every test and
// benchmark runs on these; the loaders treat them exactly like real ones.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "checkpoint/model_config.h"

namespace loraserve {

// "tiny" (CI: hidden 256, 4 layers, 4 heads, 2 KV heads, inter 512, vocab
// 1024), "llama2-7b", "llama3-8b" (GQA, llama3 rope scaling, vocab 128256),
// "mistral-nemo-12b" (head_dim 128 with hidden 5120), "qwen2-tiny" (the
// tiny shapes as Qwen2: q/k/v biases, tied embeddings, rope_theta 1e6),
// "qwen3-tiny" (Qwen3: 8 heads of 64 over hidden 256, q/k norms),
// "qwen2.5-7b", "qwen3-8b" (the released shapes, for benchmarks).
StatusOr<ModelConfig> synth_preset(const std::string& name);
std::string synth_preset_names();  // "tiny, llama2-7b, ..." for help and errors

struct SynthOptions {
  ModelConfig config;
  uint64_t seed = 0;
  int num_adapters = 0;
  std::vector<int> ranks = {8, 16, 32, 64};  // adapter i gets ranks[i % size]
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj"};
  bool write_model = true;
};

// Writes OUT/model/{config.json, model.safetensors, tokenizer.json,
// tokenizer_config.json} (the tokenizer from tokenizer/tokenizer_train.h, when
// the config has distinct bos/eos ids and vocab_size >= 259; Qwen families
// get Qwen's layout: ChatML specials and chat_template, no BOS added), the
// tensors under the family's Hugging Face names (Qwen2's q/k/v biases,
// Qwen3's q_norm/k_norm), and
// OUT/adapters/adapter-NNN/{adapter_config.json, adapter_model.safetensors}.
// Weights are drawn so activations stay O(1) through the layers (normal with
// std 1/sqrt(fan_in) for projections; norms around 1) and each adapter moves
// the logits visibly (B is not zero as PEFT initialises it). Same seed, same
// bytes.
Status synth_write(const SynthOptions& opts, const std::string& out_dir);

}  // namespace loraserve
