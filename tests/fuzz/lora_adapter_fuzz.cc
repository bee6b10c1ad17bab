// libFuzzer target for PEFT adapters (checkpoint/lora_adapter.h):
// adapter_config.json and adapter_model.safetensors through
// LoraAdapter::load_bytes (the upload path; load_dir reads the same two
// files) against a tiny base model. Input: CONFIG_JSON [ '\0' SAFETENSORS ].
// Without a NUL the tensors are a fixed valid set (q_proj and v_proj of both
// layers at rank 4), so mutations of the config alone reach the checks that
// need tensors. Checks:
//   - never a crash, hang, leak or UB (ASan/UBSan);
//   - a refusal is one of the documented codes;
//   - an accepted adapter holds per module exactly rank x in of A and
//     rank x out of Bt, every weight finite, every scale finite and
//     |scale| <= 1e4 (the documented bound).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint/lora_adapter.h"
#include "tests/support/tiny_model_config.h"

using namespace loraserve;

namespace {

ModelConfig base_config() { return tiny_llama_config(); }

// A safetensors file of f32 tensors (sorted by name, as the format wants
// no particular order but writers sort).
std::string safetensors_bytes(const std::vector<std::pair<std::string, std::vector<int64_t>>>& ts) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::string data;
  for (const auto& [name, shape] : ts) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const size_t begin = data.size();
    for (int64_t i = 0; i < n; ++i) {
      const float v = static_cast<float>(i % 13) / 16.0f;
      data.append(reinterpret_cast<const char*>(&v), 4);
    }
    header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h += ' ';
  std::string out(8, '\0');
  const uint64_t len = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + h + data;
}

std::string fixed_tensors() {
  std::vector<std::pair<std::string, std::vector<int64_t>>> ts;
  for (int l = 0; l < 2; ++l) {
    const std::string p = "base_model.model.model.layers." + std::to_string(l) + ".self_attn.";
    ts.push_back({p + "q_proj.lora_A.weight", {4, 16}});
    ts.push_back({p + "q_proj.lora_B.weight", {16, 4}});
    ts.push_back({p + "v_proj.lora_A.weight", {4, 16}});
    ts.push_back({p + "v_proj.lora_B.weight", {8, 4}});
  }
  return safetensors_bytes(ts);
}

bool documented(StatusCode c) {
  return c == StatusCode::kInvalidArgument || c == StatusCode::kFailedPrecondition ||
         c == StatusCode::kUnimplemented || c == StatusCode::kDataLoss;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ModelConfig base = base_config();
  static const std::string fixed = fixed_tensors();
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string config = input.substr(0, nul);
  std::string tensors = nul == std::string::npos ? fixed : input.substr(nul + 1);
  auto a = LoraAdapter::load_bytes(config, std::move(tensors), base, "fuzz-adapter");
  if (!a.ok()) {
    if (!documented(a.status().code())) std::abort();
    return 0;
  }
  const LoraAdapter& ad = **a;
  if (ad.num_layers() != base.num_hidden_layers) std::abort();
  for (int64_t l = 0; l < ad.num_layers(); ++l) {
    for (int m = 0; m < kNumLoraModules; ++m) {
      const LoraModule mod = static_cast<LoraModule>(m);
      const LoraWeights& w = ad.weights(l, mod);
      if (w.rank < 0 || w.rank > ad.max_rank()) std::abort();
      if (w.rank == 0) continue;
      if (w.a.size() != static_cast<size_t>(w.rank * lora_module_in_dim(base, mod))) std::abort();
      if (w.bt.size() != static_cast<size_t>(w.rank * lora_module_out_dim(base, mod))) std::abort();
      if (!std::isfinite(w.scale) || std::fabs(w.scale) > 1e4f) std::abort();
      for (float x : w.a) {
        if (!std::isfinite(x)) std::abort();
      }
      for (float x : w.bt) {
        if (!std::isfinite(x)) std::abort();
      }
    }
  }
  return 0;
}
