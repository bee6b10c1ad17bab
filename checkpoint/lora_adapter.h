// A PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors),
// validated against a base model and converted once into the layout the
// LoRA kernels read: per (layer, module) A [rank, in] and Bt = B^T
// [rank, out], fp32, with the scale folded from lora_alpha / r (or
// / sqrt(r) for use_rslora), rank_pattern and alpha_pattern applied.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "checkpoint/model_config.h"

namespace loraserve {

// The projections LoRA may target, in a fixed order used everywhere.
enum class LoraModule : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
constexpr int kNumLoraModules = 7;
const char* lora_module_name(LoraModule m);  // "q_proj", ...
// Input and output width of a module for this model.
int64_t lora_module_in_dim(const ModelConfig& c, LoraModule m);
int64_t lora_module_out_dim(const ModelConfig& c, LoraModule m);

struct LoraWeights {
  int32_t rank = 0;           // 0 = this module is not adapted in this layer
  float scale = 0.0f;
  std::vector<float> a;       // [rank, in_dim]
  std::vector<float> bt;      // [rank, out_dim]
};

struct LoraAdapterConfig {
  int64_t r = 0;
  double lora_alpha = 0;
  bool use_rslora = false;
  std::vector<std::string> target_modules;  // list form
  std::string target_modules_regex;         // string form (re.fullmatch on module names)
  // ... rank_pattern / alpha_pattern are applied during load.
};

class LoraAdapter {
 public:
  // Loads DIR/adapter_config.json and DIR/adapter_model.safetensors.
  // INVALID_ARGUMENT / FAILED_PRECONDITION (base mismatch) / UNIMPLEMENTED
  // (DoRA, modules_to_save, bias != "none", ...) with a message naming the
  // field or tensor; DATA_LOSS for a corrupt file (the message names it).
  //
  // Numbers are checked, not trusted: every lora_A/lora_B element must be
  // finite (NaN/inf refused, naming the tensor and element); lora_alpha and
  // alpha_pattern values finite; r and rank_pattern values in [1, 65536];
  // and each module's scale (alpha / r, or alpha / sqrt(r) with use_rslora)
  // within |scale| <= 1e4, naming the field it came from. Why 1e4: PEFT's
  // scales are alpha / r with alpha of the order of r (defaults 8 / 8; the
  // common recipes alpha = r or 2r, rsLoRA alpha / sqrt(r)), so real
  // adapters sit between ~0.1 and a few dozen. A scale of 1e4 already lets
  // the delta outweigh the base projection by orders of magnitude; far
  // beyond it the output is noise (lora_alpha 2^40 gives uniform tokens)
  // or overflows (1e308 gives non-finite logits), which is a broken config,
  // not a model. A negative scale is allowed (PEFT allows it).
  static StatusOr<std::unique_ptr<LoraAdapter>> load_dir(const std::string& dir,
                                                         const ModelConfig& base);
  // Same from bytes (uploads over the wire).
  static StatusOr<std::unique_ptr<LoraAdapter>> load_bytes(const std::string& config_json,
                                                           std::string safetensors_bytes,
                                                           const ModelConfig& base,
                                                           const std::string& label);

  const LoraWeights& weights(int64_t layer, LoraModule m) const {
    return layers_[layer][static_cast<int>(m)];
  }
  int32_t max_rank() const { return max_rank_; }
  // Modules adapted in at least one layer, as a bit mask over LoraModule.
  uint32_t module_mask() const { return module_mask_; }
  size_t weight_bytes() const;  // fp32 bytes of A and Bt over all layers
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }

 private:
  std::vector<std::array<LoraWeights, kNumLoraModules>> layers_;
  int32_t max_rank_ = 0;
  uint32_t module_mask_ = 0;
};

}  // namespace loraserve
