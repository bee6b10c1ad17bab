#include "checkpoint/model_config.h"

#include "common/file_util.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace loraserve {
namespace {

using json = nlohmann::json;

// Reads an optional integer field; `*present` tells whether it was there and
// not null.
Status get_int(const json& j, const char* key, bool required, int64_t* out,
               bool* present = nullptr) {
  if (present) *present = false;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return invalid_argument(std::string("config.json: missing field ") + key);
    return ok_status();
  }
  if (!it->is_number_integer()) {
    return invalid_argument(std::string("config.json: field ") + key + " must be an integer, got " +
                            it->dump());
  }
  *out = it->get<int64_t>();
  if (present) *present = true;
  return ok_status();
}

Status get_number(const json& j, const char* key, bool required, double* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return invalid_argument(std::string("config.json: missing field ") + key);
    return ok_status();
  }
  if (!it->is_number()) {
    return invalid_argument(std::string("config.json: field ") + key + " must be a number, got " +
                            it->dump());
  }
  *out = it->get<double>();
  return ok_status();
}

Status get_bool(const json& j, const char* key, bool* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return ok_status();
  if (!it->is_boolean()) {
    return invalid_argument(std::string("config.json: field ") + key +
                            " must be true or false, got " + it->dump());
  }
  *out = it->get<bool>();
  return ok_status();
}

// bos/eos: an integer, a list of integers (first one taken), or null.
Status get_token_id(const json& j, const char* key, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return ok_status();
  const json* v = &*it;
  if (v->is_array()) {
    if (v->empty()) return ok_status();
    v = &(*v)[0];
  }
  if (!v->is_number_integer()) {
    return invalid_argument(std::string("config.json: field ") + key +
                            " must be an integer or a list of integers, got " + it->dump());
  }
  *out = v->get<int64_t>();
  return ok_status();
}

// Dimensions are positive and bounded, so that the sizes the engine derives
// from them (q_dim = heads x head_dim, vocab x hidden, ...) cannot overflow
// int64: 2^24 is ~64x the largest dimension of any released Llama-family
// model (vocab 256k, intermediate 53k); context and layer counts have
// bounds of their own.
constexpr int64_t kMaxDim = int64_t{1} << 24;

Status require_positive(const char* key, int64_t v, int64_t max = kMaxDim) {
  if (v <= 0) {
    return invalid_argument(std::string("config.json: field ") + key + " must be positive, got " +
                            std::to_string(v));
  }
  if (v > max) {
    return invalid_argument(std::string("config.json: field ") + key + " is " +
                            std::to_string(v) + ", beyond the supported " + std::to_string(max));
  }
  return ok_status();
}

struct FamilyName {
  ModelFamily family;
  const char* architecture;
  const char* model_type;
};
constexpr FamilyName kFamilies[] = {
    {ModelFamily::kLlama, "LlamaForCausalLM", "llama"},
    {ModelFamily::kMistral, "MistralForCausalLM", "mistral"},
    {ModelFamily::kQwen2, "Qwen2ForCausalLM", "qwen2"},
    {ModelFamily::kQwen3, "Qwen3ForCausalLM", "qwen3"},
};

std::string supported_list(bool architectures) {
  std::string s;
  for (const FamilyName& f : kFamilies) {
    if (!s.empty()) s += ", ";
    s += architectures ? f.architecture : f.model_type;
  }
  return s;
}

// The family from `architectures` (its first entry, as transformers'
// AutoModel uses) checked against `model_type`; from `model_type` alone
// when `architectures` is absent.
Status parse_family(const json& j, ModelConfig* c) {
  auto mt = j.find("model_type");
  auto arch = j.find("architectures");
  const bool has_arch = arch != j.end() && !arch->is_null();
  if (has_arch) {
    if (!arch->is_array() || arch->empty() || !(*arch)[0].is_string()) {
      return invalid_argument(
          "config.json: architectures must be a non-empty list of strings, got " + arch->dump());
    }
    const std::string name = (*arch)[0].get<std::string>();
    const FamilyName* found = nullptr;
    for (const FamilyName& f : kFamilies) {
      if (name == f.architecture) found = &f;
    }
    if (found == nullptr) {
      return unimplemented("config.json: architectures " + arch->dump() + " is not supported (" +
                           supported_list(true) + ")");
    }
    if (mt == j.end() || !mt->is_string()) {
      return invalid_argument("config.json: missing field model_type");
    }
    if (mt->get<std::string>() != found->model_type) {
      return invalid_argument("config.json: architectures names " + name + " but model_type is " +
                              mt->dump() + " (expected \"" + found->model_type + "\")");
    }
    c->family = found->family;
    c->model_type = found->model_type;
    return ok_status();
  }
  if (mt == j.end() || !mt->is_string()) {
    return invalid_argument("config.json: missing field model_type");
  }
  c->model_type = mt->get<std::string>();
  for (const FamilyName& f : kFamilies) {
    if (c->model_type == f.model_type) {
      c->family = f.family;
      return ok_status();
    }
  }
  return unimplemented("config.json: model_type \"" + c->model_type + "\" is not supported (" +
                       supported_list(false) + "; architectures " + supported_list(true) + ")");
}

// Qwen2/Qwen3 ship with use_sliding_window false; true (or a layer_types
// list with sliding layers, newer transformers' spelling) is refused until
// sliding-window attention is built.
Status refuse_sliding_layers(const json& j) {
  bool sliding = false;
  LS_RETURN_IF_ERROR(get_bool(j, "use_sliding_window", &sliding));
  if (sliding) {
    return unimplemented(
        "config.json: use_sliding_window true is not supported (sliding-window attention is not "
        "built; the released Qwen2/Qwen2.5/Qwen3 checkpoints set it false)");
  }
  if (auto it = j.find("layer_types"); it != j.end() && it->is_array()) {
    for (const json& t : *it) {
      if (!t.is_string() || t.get<std::string>() != "full_attention") {
        return unimplemented("config.json: layer_types entry " + t.dump() +
                             " is not supported (only \"full_attention\")");
      }
    }
  }
  return ok_status();
}

Status parse_rope_scaling(const json& rs, ModelConfig* c) {
  if (rs.is_null()) return ok_status();
  if (!rs.is_object()) {
    return invalid_argument("config.json: rope_scaling must be an object or null, got " +
                            rs.dump());
  }
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    auto it = rs.find(key);
    if (it != rs.end() && it->is_string()) {
      type = it->get<std::string>();
      break;
    }
  }
  if (type.empty()) return invalid_argument("config.json: rope_scaling has no type / rope_type");
  if (type == "default") return ok_status();  // transformers' spelling of "no scaling"
  if (type != "llama3") {
    return unimplemented("config.json: rope_scaling type \"" + type +
                         "\" is not supported (only \"llama3\")");
  }
  kernels::Llama3RopeScaling s;
  double factor = 0, low = 0, high = 0;
  int64_t orig = 0;
  auto ctx = [](const Status& st) { return st.with_context("rope_scaling"); };
  Status st = get_number(rs, "factor", true, &factor);
  if (!st.ok()) return ctx(st);
  st = get_number(rs, "low_freq_factor", true, &low);
  if (!st.ok()) return ctx(st);
  st = get_number(rs, "high_freq_factor", true, &high);
  if (!st.ok()) return ctx(st);
  st = get_int(rs, "original_max_position_embeddings", true, &orig);
  if (!st.ok()) return ctx(st);
  // Stored as float: beyond 1e6 a factor would make every wavelength
  // "long" anyway, and beyond float's range the cast is undefined.
  constexpr double kMaxRopeFactor = 1e6;
  if (!(factor >= 1.0) || !(factor <= kMaxRopeFactor)) {
    return invalid_argument("config.json: rope_scaling.factor must be in [1, 1e6], got " +
                            std::to_string(factor));
  }
  if (!(low > 0) || !(high > low) || !(high <= kMaxRopeFactor)) {
    return invalid_argument(
        "config.json: rope_scaling needs 0 < low_freq_factor < high_freq_factor <= 1e6, got " +
        std::to_string(low) + " and " + std::to_string(high));
  }
  if (orig <= 0 || orig > (int64_t{1} << 31)) {
    return invalid_argument(
        "config.json: rope_scaling.original_max_position_embeddings must be in [1, 2^31]");
  }
  s.factor = static_cast<float>(factor);
  s.low_freq_factor = static_cast<float>(low);
  s.high_freq_factor = static_cast<float>(high);
  s.original_max_position_embeddings = orig;
  c->rope_scaling = s;
  return ok_status();
}

}  // namespace

StatusOr<ModelConfig> ModelConfig::from_json_text(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return invalid_argument(std::string("config.json is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return invalid_argument("config.json is not a JSON object");

  ModelConfig c;
  LS_RETURN_IF_ERROR(parse_family(j, &c));
  const bool qwen = c.family == ModelFamily::kQwen2 || c.family == ModelFamily::kQwen3;

  LS_RETURN_IF_ERROR(get_int(j, "hidden_size", true, &c.hidden_size));
  LS_RETURN_IF_ERROR(get_int(j, "intermediate_size", true, &c.intermediate_size));
  LS_RETURN_IF_ERROR(get_int(j, "num_hidden_layers", true, &c.num_hidden_layers));
  LS_RETURN_IF_ERROR(get_int(j, "num_attention_heads", true, &c.num_attention_heads));
  LS_RETURN_IF_ERROR(get_int(j, "vocab_size", true, &c.vocab_size));
  LS_RETURN_IF_ERROR(require_positive("hidden_size", c.hidden_size));
  LS_RETURN_IF_ERROR(require_positive("intermediate_size", c.intermediate_size));
  LS_RETURN_IF_ERROR(require_positive("num_hidden_layers", c.num_hidden_layers, 1 << 16));
  LS_RETURN_IF_ERROR(require_positive("num_attention_heads", c.num_attention_heads));
  LS_RETURN_IF_ERROR(require_positive("vocab_size", c.vocab_size));

  c.num_key_value_heads = c.num_attention_heads;
  LS_RETURN_IF_ERROR(get_int(j, "num_key_value_heads", false, &c.num_key_value_heads));
  LS_RETURN_IF_ERROR(require_positive("num_key_value_heads", c.num_key_value_heads));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return invalid_argument("config.json: num_attention_heads (" +
                            std::to_string(c.num_attention_heads) +
                            ") is not a multiple of num_key_value_heads (" +
                            std::to_string(c.num_key_value_heads) + ")");
  }
  bool has_head_dim = false;
  LS_RETURN_IF_ERROR(get_int(j, "head_dim", false, &c.head_dim, &has_head_dim));
  if (!has_head_dim && c.family == ModelFamily::kQwen3) {
    c.head_dim = 128;  // Qwen3Config's default: config.head_dim always exists there
  } else if (!has_head_dim) {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return invalid_argument("config.json: hidden_size (" + std::to_string(c.hidden_size) +
                              ") is not a multiple of num_attention_heads (" +
                              std::to_string(c.num_attention_heads) + ") and head_dim is absent");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  LS_RETURN_IF_ERROR(require_positive("head_dim", c.head_dim));
  if (c.head_dim % 2 != 0) {
    return invalid_argument("config.json: head_dim must be even for rotary embeddings, got " +
                            std::to_string(c.head_dim));
  }

  c.max_position_embeddings = qwen ? 32768 : 2048;  // the transformers config defaults
  LS_RETURN_IF_ERROR(get_int(j, "max_position_embeddings", false, &c.max_position_embeddings));
  LS_RETURN_IF_ERROR(require_positive("max_position_embeddings", c.max_position_embeddings,
                                       int64_t{1} << 31));
  LS_RETURN_IF_ERROR(get_number(j, "rms_norm_eps", false, &c.rms_norm_eps));
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps)) {
    return invalid_argument("config.json: rms_norm_eps must be positive and finite");
  }
  LS_RETURN_IF_ERROR(get_number(j, "rope_theta", false, &c.rope_theta));
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta)) {
    return invalid_argument("config.json: rope_theta must be positive and finite");
  }
  LS_RETURN_IF_ERROR(get_bool(j, "tie_word_embeddings", &c.tie_word_embeddings));

  if (auto it = j.find("hidden_act"); it != j.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>() != "silu") {
      return unimplemented("config.json: hidden_act " + it->dump() +
                           " is not supported (only \"silu\")");
    }
  }
  // Qwen2's q/k/v biases are fixed by the architecture (transformers reads
  // no flag for them); elsewhere attention_bias would add o_proj's too.
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (c.family == ModelFamily::kQwen2 && std::string(key) == "attention_bias") continue;
    bool bias = false;
    LS_RETURN_IF_ERROR(get_bool(j, key, &bias));
    if (bias) return unimplemented(std::string("config.json: ") + key + " true is not supported");
  }
  if (qwen) LS_RETURN_IF_ERROR(refuse_sliding_layers(j));
  if (auto it = j.find("rope_scaling"); it != j.end()) {
    LS_RETURN_IF_ERROR(parse_rope_scaling(*it, &c));
  }
  if (c.family == ModelFamily::kMistral) {
    if (auto it = j.find("sliding_window"); it != j.end() && !it->is_null()) {
      if (!it->is_number_integer()) {
        return invalid_argument("config.json: sliding_window must be an integer or null, got " +
                                it->dump());
      }
      if (it->get<int64_t>() < c.max_position_embeddings) {
        return unimplemented("config.json: sliding_window " + it->dump() +
                             " < max_position_embeddings " +
                             std::to_string(c.max_position_embeddings) +
                             ": sliding-window attention is not supported");
      }
    }
  }
  LS_RETURN_IF_ERROR(get_token_id(j, "bos_token_id", &c.bos_token_id));
  LS_RETURN_IF_ERROR(get_token_id(j, "eos_token_id", &c.eos_token_id));
  for (const char* key : {"torch_dtype", "dtype"}) {  // newer transformers write "dtype"
    auto it = j.find(key);
    if (it != j.end() && it->is_string()) {
      c.torch_dtype = it->get<std::string>();
      break;
    }
  }
  return c;
}

StatusOr<ModelConfig> ModelConfig::from_file(const std::string& path) {
  LS_ASSIGN_OR_RETURN(std::string text, read_file(path));
  StatusOr<ModelConfig> c = from_json_text(text);
  if (!c.ok()) return c.status().with_context(path);
  return c;
}

const char* ModelConfig::architecture() const {
  for (const FamilyName& f : kFamilies) {
    if (f.family == family) return f.architecture;
  }
  return "LlamaForCausalLM";
}

// Written in the layout transformers' save_pretrained gives each family
// (its fields, its defaults), so synthetic checkpoints look like real ones.
std::string ModelConfig::to_json_text() const {
  const FamilyName* f = &kFamilies[0];
  for (const FamilyName& e : kFamilies) {
    if (e.family == family) f = &e;
  }
  const bool qwen = family == ModelFamily::kQwen2 || family == ModelFamily::kQwen3;
  json j = json::object();
  j["architectures"] = {f->architecture};
  j["model_type"] = f->model_type;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  // Qwen2 configs carry no head_dim (hidden / heads); every other family
  // here writes it (Qwen3 always, as its default is 128, not hidden / heads).
  if (family != ModelFamily::kQwen2 || head_dim * num_attention_heads != hidden_size) {
    j["head_dim"] = head_dim;
  }
  j["vocab_size"] = vocab_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (rope_scaling) {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", rope_scaling->factor},
        {"low_freq_factor", rope_scaling->low_freq_factor},
        {"high_freq_factor", rope_scaling->high_freq_factor},
        {"original_max_position_embeddings", rope_scaling->original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["hidden_act"] = "silu";
  if (family != ModelFamily::kQwen2) j["attention_bias"] = false;
  if (family == ModelFamily::kMistral) {
    j["sliding_window"] = nullptr;
  } else if (qwen) {
    // As released: the window fields present, sliding-window attention off.
    j["use_sliding_window"] = false;
    j["sliding_window"] =
        family == ModelFamily::kQwen2 ? json(max_position_embeddings) : json(nullptr);
    j["max_window_layers"] = num_hidden_layers;
  } else {
    j["mlp_bias"] = false;
    j["pretraining_tp"] = 1;
  }
  j["attention_dropout"] = 0.0;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id >= 0 ? json(bos_token_id) : json(nullptr);
  j["eos_token_id"] = eos_token_id >= 0 ? json(eos_token_id) : json(nullptr);
  if (!torch_dtype.empty()) j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

}  // namespace loraserve
