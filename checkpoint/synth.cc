#include "checkpoint/synth.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>
#include <nlohmann/json.hpp>

#include "checkpoint/lora_adapter.h"
#include "checkpoint/safetensors.h"
#include "tokenizer/tokenizer_train.h"

namespace loraserve {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// Counter-based generator: each value depends only on (seed, tensor name,
// element index), so output is identical across platforms and library
// versions (std::normal_distribution is not) and tensors can be generated in
// any order.
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t stream_key(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the name
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 0x100000001b3ull;
  }
  return splitmix64(splitmix64(seed) ^ h);
}

// The c-th value of the stream `key` (splitmix64's own sequence: key + c * gamma).
uint64_t stream_at(uint64_t key, uint64_t c) { return splitmix64(key + c * 0x9e3779b97f4a7c15ull); }

// Uniform in (0, 1] from the top 53 bits.
double unit_open(uint64_t x) { return static_cast<double>((x >> 11) + 1) * 0x1.0p-53; }

// Fills `n` bf16 values mean + std * N(0,1) (Box-Muller on counter pairs).
// Counter-based, so large tensors are filled by several threads with the
// same bytes as one (a 7B model is 13 GB: minutes on one core).
void fill_normal_bf16(uint64_t key, double mean, double std_dev, size_t n, std::string* bytes) {
  bytes->resize(n * 2);
  uint16_t* out = reinterpret_cast<uint16_t*>(bytes->data());
  auto fill = [=](size_t begin, size_t end) {  // begin even
    constexpr double kTwoPi = 6.283185307179586476925286766559;
    for (size_t i = begin; i < end; i += 2) {
      const uint64_t pair = i / 2;
      const double u1 = unit_open(stream_at(key, 2 * pair));
      const double u2 = unit_open(stream_at(key, 2 * pair + 1));
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double z0 = r * std::cos(kTwoPi * u2);
      const double z1 = r * std::sin(kTwoPi * u2);
      out[i] = f32_to_bf16(static_cast<float>(mean + std_dev * z0));
      if (i + 1 < end) out[i + 1] = f32_to_bf16(static_cast<float>(mean + std_dev * z1));
    }
  };
  const size_t threads = std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()), 32);
  if (n < (size_t{1} << 20) || threads == 1) {
    fill(0, n);
    return;
  }
  const size_t chunk = (n / threads + 1) & ~size_t{1};
  std::vector<std::thread> pool;
  for (size_t b = 0; b < n; b += chunk) pool.emplace_back(fill, b, std::min(n, b + chunk));
  for (std::thread& t : pool) t.join();
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

struct Dist {
  double mean;
  double std_dev;
};

// How each tensor of the base model is drawn (see synth.h for why).
Dist model_dist(const ModelConfig& c, const std::string& name, const std::vector<int64_t>& shape) {
  auto ends = [&](const char* s) {
    const std::string suf(s);
    return name.size() >= suf.size() &&
           name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
  };
  // Tied: the table is the lm_head too, so it gets lm_head's scale (the
  // first rmsnorm makes the embedding's scale irrelevant to layer 0).
  if (name == "model.embed_tokens.weight") {
    return {0.0, c.tie_word_embeddings ? 1.0 / std::sqrt(static_cast<double>(c.hidden_size)) : 1.0};
  }
  if (name == "lm_head.weight") return {0.0, 1.0 / std::sqrt(static_cast<double>(c.hidden_size))};
  // Qwen3's q/k norms: spread wider than the layer norms so that skipping
  // or misplacing them changes the logits clearly.
  if (ends("q_norm.weight") || ends("k_norm.weight")) return {1.0, 0.3};
  if (ends("norm.weight") || ends("layernorm.weight")) return {1.0, 0.1};
  // Qwen2's q/k/v biases: the size of the projection's output entries.
  if (ends(".bias")) return {0.0, 0.5};
  // Projections [out, in]: std 1/sqrt(fan_in) keeps activations O(1).
  return {0.0, 1.0 / std::sqrt(static_cast<double>(shape.back()))};
}

Status write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return internal_error("cannot create " + path);
  out << text;
  out.close();
  if (!out) return internal_error("cannot write " + path);
  return ok_status();
}

Status write_model(const ModelConfig& c, uint64_t seed, const std::string& dir) {
  LS_RETURN_IF_ERROR(write_text(dir + "/config.json", c.to_json_text()));
  const int64_t h = c.hidden_size, inter = c.intermediate_size;
  std::vector<TensorSpec> specs;
  specs.push_back({"model.embed_tokens.weight", DType::kBF16, {c.vocab_size, h}});
  specs.push_back({"model.norm.weight", DType::kBF16, {h}});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", DType::kBF16, {c.vocab_size, h}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    specs.push_back({p + "input_layernorm.weight", DType::kBF16, {h}});
    specs.push_back({p + "self_attn.q_proj.weight", DType::kBF16, {c.q_dim(), h}});
    specs.push_back({p + "self_attn.k_proj.weight", DType::kBF16, {c.kv_dim(), h}});
    specs.push_back({p + "self_attn.v_proj.weight", DType::kBF16, {c.kv_dim(), h}});
    specs.push_back({p + "self_attn.o_proj.weight", DType::kBF16, {h, c.q_dim()}});
    specs.push_back({p + "post_attention_layernorm.weight", DType::kBF16, {h}});
    specs.push_back({p + "mlp.gate_proj.weight", DType::kBF16, {inter, h}});
    specs.push_back({p + "mlp.up_proj.weight", DType::kBF16, {inter, h}});
    specs.push_back({p + "mlp.down_proj.weight", DType::kBF16, {h, inter}});
    if (c.qkv_bias()) {
      specs.push_back({p + "self_attn.q_proj.bias", DType::kBF16, {c.q_dim()}});
      specs.push_back({p + "self_attn.k_proj.bias", DType::kBF16, {c.kv_dim()}});
      specs.push_back({p + "self_attn.v_proj.bias", DType::kBF16, {c.kv_dim()}});
    }
    if (c.qk_norm()) {
      specs.push_back({p + "self_attn.q_norm.weight", DType::kBF16, {c.head_dim}});
      specs.push_back({p + "self_attn.k_norm.weight", DType::kBF16, {c.head_dim}});
    }
  }
  return write_safetensors_streaming(dir + "/model.safetensors", std::move(specs),
                                     [&](const TensorSpec& spec, std::string* bytes) {
                                       const Dist d = model_dist(c, spec.name, spec.shape);
                                       fill_normal_bf16(
                                           stream_key(seed, spec.name), d.mean, d.std_dev,
                                           static_cast<size_t>(numel(spec.shape)), bytes);
                                       return ok_status();
                                     },
                                     {{"format", "pt"}});
}

Status write_adapter(const ModelConfig& c, uint64_t seed, int index, int rank,
                     const std::vector<LoraModule>& modules, const std::string& dir) {
  char id[32];
  std::snprintf(id, sizeof(id), "adapter-%03d", index);
  ojson cfg = ojson::object();  // the fields PEFT's LoraConfig.save_pretrained writes
  cfg["alpha_pattern"] = ojson::object();
  cfg["auto_mapping"] = nullptr;
  cfg["base_model_name_or_path"] = "../../model";
  cfg["bias"] = "none";
  cfg["fan_in_fan_out"] = false;
  cfg["inference_mode"] = true;
  cfg["init_lora_weights"] = true;
  cfg["layers_pattern"] = nullptr;
  cfg["layers_to_transform"] = nullptr;
  cfg["lora_alpha"] = 2 * rank;
  cfg["lora_dropout"] = 0.0;
  cfg["modules_to_save"] = nullptr;
  cfg["peft_type"] = "LORA";
  cfg["r"] = rank;
  cfg["rank_pattern"] = ojson::object();
  cfg["revision"] = nullptr;
  ojson targets = ojson::array();
  for (LoraModule m : modules) targets.push_back(lora_module_name(m));
  cfg["target_modules"] = targets;
  cfg["task_type"] = "CAUSAL_LM";
  cfg["use_dora"] = false;
  cfg["use_rslora"] = false;
  LS_RETURN_IF_ERROR(write_text(dir + "/adapter_config.json", cfg.dump(2) + "\n"));

  std::vector<TensorSpec> specs;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (LoraModule m : modules) {
      const std::string parent =
          static_cast<int>(m) <= static_cast<int>(LoraModule::kO) ? "self_attn." : "mlp.";
      const std::string p =
          "base_model.model.model.layers." + std::to_string(l) + "." + parent + lora_module_name(m);
      specs.push_back({p + ".lora_A.weight", DType::kBF16, {rank, lora_module_in_dim(c, m)}});
      specs.push_back({p + ".lora_B.weight", DType::kBF16, {lora_module_out_dim(c, m), rank}});
    }
  }
  // A ~ N(0, 1/in) gives A x entries of std ~1; B std 0.25/sqrt(r) with the
  // scale alpha/r = 2 makes the update about half the size of the base
  // projection's output: enough to change greedy tokens, not enough to blow
  // up the logits.
  const std::string stream_prefix = std::string(id) + "/";
  return write_safetensors_streaming(
      dir + "/adapter_model.safetensors", std::move(specs),
      [&](const TensorSpec& spec, std::string* bytes) {
        const bool is_a = spec.name.find(".lora_A.") != std::string::npos;
        const double std_dev = is_a ? 1.0 / std::sqrt(static_cast<double>(spec.shape[1]))
                                    : 0.25 / std::sqrt(static_cast<double>(rank));
        fill_normal_bf16(stream_key(seed, stream_prefix + spec.name), 0.0, std_dev,
                         static_cast<size_t>(numel(spec.shape)), bytes);
        return ok_status();
      },
      {{"format", "pt"}});
}

}  // namespace

StatusOr<ModelConfig> synth_preset(const std::string& name) {
  ModelConfig c;
  c.family = ModelFamily::kLlama;
  c.model_type = "llama";
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = false;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  c.torch_dtype = "bfloat16";
  c.head_dim = 0;  // hidden / heads unless a preset sets it
  // Qwen2/Qwen3: "<|endoftext|>" (bos) and "<|im_end|>" (eos) as released.
  auto qwen = [&](ModelFamily family, int64_t vocab, int64_t endoftext) {
    c.family = family;
    c.model_type = family == ModelFamily::kQwen2 ? "qwen2" : "qwen3";
    c.rms_norm_eps = 1e-6;
    c.rope_theta = 1000000.0;
    c.vocab_size = vocab;
    c.bos_token_id = endoftext;
    c.eos_token_id = endoftext + 2;
  };
  // Llama 3.x: theta 500000, the llama3 rope scaling, <|begin_of_text|> / <|end_of_text|>.
  auto llama3 = [&](float rope_factor) {
    c.rope_theta = 500000.0;
    kernels::Llama3RopeScaling s;
    s.factor = rope_factor;
    s.low_freq_factor = 1.0f;
    s.high_freq_factor = 4.0f;
    s.original_max_position_embeddings = 8192;
    c.rope_scaling = s;
    c.bos_token_id = 128000;
    c.eos_token_id = 128001;
  };
  if (name == "tiny") {
    c.hidden_size = 256;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.intermediate_size = 512;
    c.vocab_size = 1024;
    c.max_position_embeddings = 2048;
  } else if (name == "llama2-7b") {
    c.hidden_size = 4096;
    c.num_hidden_layers = 32;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 32;
    c.intermediate_size = 11008;
    c.vocab_size = 32000;
    c.max_position_embeddings = 4096;
  } else if (name == "llama3-8b") {
    c.hidden_size = 4096;
    c.num_hidden_layers = 32;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.intermediate_size = 14336;
    c.vocab_size = 128256;
    c.max_position_embeddings = 131072;
    llama3(8.0f);
  } else if (name == "llama3.2-1b") {  // Llama-3.2-1B: 1.24B parameters, tied embeddings
    c.hidden_size = 2048;
    c.num_hidden_layers = 16;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.intermediate_size = 8192;
    c.vocab_size = 128256;
    c.max_position_embeddings = 131072;
    c.tie_word_embeddings = true;
    llama3(32.0f);
  } else if (name == "mistral-nemo-12b") {  // head_dim 128: q_dim 4096 != hidden 5120
    c.family = ModelFamily::kMistral;
    c.model_type = "mistral";
    c.hidden_size = 5120;
    c.num_hidden_layers = 40;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.head_dim = 128;
    c.intermediate_size = 14336;
    c.vocab_size = 131072;
    c.max_position_embeddings = 1024000;
    c.rope_theta = 1000000.0;
  } else if (name == "qwen2-tiny") {  // Qwen2.5-0.5B-like: tied embeddings, q/k/v biases
    qwen(ModelFamily::kQwen2, 1024, 1021);
    c.hidden_size = 256;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.intermediate_size = 512;
    c.max_position_embeddings = 2048;
    c.tie_word_embeddings = true;
  } else if (name == "qwen2.5-7b") {
    qwen(ModelFamily::kQwen2, 152064, 151643);
    c.hidden_size = 3584;
    c.num_hidden_layers = 28;
    c.num_attention_heads = 28;
    c.num_key_value_heads = 4;
    c.intermediate_size = 18944;
    c.max_position_embeddings = 32768;
  } else if (name == "qwen3-tiny") {  // Qwen3-0.6B-like: q_dim = 2 * hidden, q/k norms
    qwen(ModelFamily::kQwen3, 1024, 1021);
    c.hidden_size = 256;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
    c.head_dim = 64;
    c.intermediate_size = 512;
    c.max_position_embeddings = 2048;
  } else if (name == "qwen3-8b") {
    qwen(ModelFamily::kQwen3, 151936, 151643);
    c.hidden_size = 4096;
    c.num_hidden_layers = 36;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.head_dim = 128;
    c.intermediate_size = 12288;
    c.max_position_embeddings = 40960;
  } else {
    return invalid_argument("unknown synth preset \"" + name + "\" (" + synth_preset_names() + ")");
  }
  if (c.head_dim == 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  return c;
}

std::string synth_preset_names() {
  return "tiny, llama3.2-1b, llama2-7b, llama3-8b, mistral-nemo-12b, qwen2-tiny, qwen2.5-7b, qwen3-tiny, "
         "qwen3-8b";
}

Status synth_write(const SynthOptions& opts, const std::string& out_dir) {
  // Validate the config the same way a reader of config.json will.
  LS_ASSIGN_OR_RETURN(ModelConfig c, ModelConfig::from_json_text(opts.config.to_json_text()));
  if (opts.num_adapters < 0) return invalid_argument("num_adapters must be >= 0");
  if (opts.num_adapters > 1000) {
    return invalid_argument("num_adapters " + std::to_string(opts.num_adapters) +
                            " exceeds 1000 (adapter-NNN names)");
  }
  if (opts.num_adapters > 0 && opts.ranks.empty()) return invalid_argument("ranks is empty");
  for (int r : opts.ranks) {
    if (r <= 0) return invalid_argument("rank " + std::to_string(r) + " must be positive");
  }
  std::vector<LoraModule> modules;
  for (const std::string& t : opts.targets) {
    bool found = false;
    for (int m = 0; m < kNumLoraModules; ++m) {
      if (t == lora_module_name(static_cast<LoraModule>(m))) {
        for (LoraModule prev : modules) {
          if (prev == static_cast<LoraModule>(m)) {
            return invalid_argument("LoRA target module \"" + t + "\" given twice");
          }
        }
        modules.push_back(static_cast<LoraModule>(m));
        found = true;
      }
    }
    if (!found) return invalid_argument("unknown LoRA target module \"" + t + "\"");
  }
  if (opts.num_adapters > 0 && modules.empty()) return invalid_argument("targets is empty");

  std::error_code ec;
  if (opts.write_model) {
    const std::string model_dir = out_dir + "/model";
    fs::create_directories(model_dir, ec);
    if (ec) return internal_error("cannot create " + model_dir + ": " + ec.message());
    LS_RETURN_IF_ERROR(write_model(c, opts.seed, model_dir));
    // A real byte-level BPE tokenizer sized to the vocabulary, so text works end to end.
    // (Skipped for configs without distinct bos/eos or with fewer than 259 ids.)
    if (c.vocab_size >= 259 && c.bos_token_id >= 0 && c.eos_token_id >= 0 &&
        c.bos_token_id != c.eos_token_id && c.bos_token_id < c.vocab_size &&
        c.eos_token_id < c.vocab_size) {
      TokenizerTrainOptions tok;
      tok.vocab_size = c.vocab_size;
      tok.bos_id = c.bos_token_id;
      tok.eos_id = c.eos_token_id;
      tok.model_max_length = c.max_position_embeddings;
      const bool qwen = c.family == ModelFamily::kQwen2 || c.family == ModelFamily::kQwen3;
      tok.style = qwen ? TokenizerStyle::kChatMl : TokenizerStyle::kLlama;
      LS_RETURN_IF_ERROR(write_trained_tokenizer(model_dir, tok));
    }
  }
  for (int i = 0; i < opts.num_adapters; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "adapter-%03d", i);
    const std::string dir = out_dir + "/adapters/" + name;
    fs::create_directories(dir, ec);
    if (ec) return internal_error("cannot create " + dir + ": " + ec.message());
    const int rank = opts.ranks[static_cast<size_t>(i) % opts.ranks.size()];
    LS_RETURN_IF_ERROR(write_adapter(c, opts.seed, i, rank, modules, dir));
  }
  return ok_status();
}

}  // namespace loraserve
