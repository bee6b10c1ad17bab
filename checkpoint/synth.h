// Deterministic synthetic checkpoints: a Hugging Face Llama model (bf16) and
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
// 1024), "llama2-7b", "llama3-8b" (GQA, llama3 rope scaling, vocab 128256).
StatusOr<ModelConfig> synth_preset(const std::string& name);

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
// the config has distinct bos/eos ids and vocab_size >= 259) and
// OUT/adapters/adapter-NNN/{adapter_config.json, adapter_model.safetensors}.
// Weights are drawn so activations stay O(1) through the layers (normal with
// std 1/sqrt(fan_in) for projections; norms around 1) and each adapter moves
// the logits visibly (B is not zero as PEFT initialises it). Same seed, same
// bytes.
Status synth_write(const SynthOptions& opts, const std::string& out_dir);

}  // namespace loraserve
