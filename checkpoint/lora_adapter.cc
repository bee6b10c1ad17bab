#include "common/file_util.h"
#include "checkpoint/lora_adapter.h"

#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/module_pattern.h"
#include "checkpoint/safetensors.h"

namespace loraserve {
namespace {

// ordered_json keeps rank_pattern / alpha_pattern in file order: PEFT takes
// the first key that matches a module.
using ojson = nlohmann::ordered_json;

// Bounds on what a PEFT config may ask for (see lora_adapter.h for why).
constexpr int64_t kMaxRank = 65536;
constexpr double kMaxAbsScale = 1e4;

std::string number_text(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

constexpr const char* kModuleNames[kNumLoraModules] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                       "gate_proj", "up_proj", "down_proj"};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// PEFT's target/exclude matching: a string is re.fullmatch'ed against the
// module path; a list matches a path equal to an entry or ending in "."+entry.
struct ModuleMatcher {
  bool set = false;
  std::shared_ptr<const ModulePattern> regex;  // the string form; null for a list
  std::vector<std::string> names;

  StatusOr<bool> matches(const std::string& path) const {
    if (!set) return false;
    if (regex != nullptr) return regex->full_match(path);
    for (const std::string& n : names) {
      if (path == n || ends_with(path, "." + n)) return true;
    }
    return false;
  }
};

Status parse_matcher(const ojson& j, const char* field, ModuleMatcher* m, LoraAdapterConfig* cfg) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return ok_status();
  m->set = true;
  if (it->is_string()) {
    const std::string s = it->get<std::string>();
    if (s == "all-linear") {  // PEFT: every linear layer but the output head
      for (const char* n : kModuleNames) m->names.push_back(n);
      if (cfg) cfg->target_modules = m->names;
      return ok_status();
    }
    LS_ASSIGN_OR_RETURN(m->regex,
                        ModulePattern::compile(s, std::string("adapter_config.json: ") + field));
    if (cfg) cfg->target_modules_regex = s;
    return ok_status();
  }
  if (it->is_array()) {
    for (const ojson& v : *it) {
      if (!v.is_string()) {
        return invalid_argument(std::string("adapter_config.json: ") + field +
                                " must hold strings, got " + v.dump());
      }
      m->names.push_back(v.get<std::string>());
    }
    if (cfg) cfg->target_modules = m->names;
    return ok_status();
  }
  return invalid_argument(std::string("adapter_config.json: ") + field +
                          " must be a string or a list of strings, got " + it->dump());
}

// rank_pattern / alpha_pattern entry: key matches a module path when
// re.match(rf"(.*\.)?({key})$", path) does (PEFT's get_pattern_key).
struct PatternEntry {
  std::string key;
  std::shared_ptr<const ModulePattern> regex;
  double value;
};

Status parse_pattern(const ojson& j, const char* field, bool integer,
                     std::vector<PatternEntry>* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return ok_status();
  if (!it->is_object()) {
    return invalid_argument(std::string("adapter_config.json: ") + field +
                            " must be an object, got " + it->dump());
  }
  for (auto e = it->begin(); e != it->end(); ++e) {
    const ojson& v = e.value();
    if (integer ? !v.is_number_integer() : !v.is_number()) {
      return invalid_argument(std::string("adapter_config.json: ") + field + "[\"" + e.key() +
                              "\"] must be " + (integer ? "an integer" : "a number") + ", got " +
                              v.dump());
    }
    PatternEntry p;
    p.key = e.key();
    p.value = v.get<double>();
    const std::string where =
        std::string("adapter_config.json: ") + field + "[\"" + e.key() + "\"]";
    if (!std::isfinite(p.value)) {
      return invalid_argument(where + " is not a finite number: " + v.dump());
    }
    if (integer && (v.get<int64_t>() <= 0 || v.get<int64_t>() > kMaxRank)) {
      return invalid_argument(where + " is a rank, which must be in [1, " +
                              std::to_string(kMaxRank) + "], got " + v.dump());
    }
    // PEFT's get_pattern_key: re.match(rf"(.*\.)?({key})$", path).
    LS_ASSIGN_OR_RETURN(p.regex, ModulePattern::compile("(.*\\.)?(" + p.key + ")",
                                                        std::string("adapter_config.json: ") +
                                                            field + " key"));
    out->push_back(std::move(p));
  }
  return ok_status();
}

// The first entry matching `path`, or null.
StatusOr<const PatternEntry*> find_pattern(const std::vector<PatternEntry>& patterns,
                                           const std::string& path) {
  for (const PatternEntry& p : patterns) {
    LS_ASSIGN_OR_RETURN(bool hit, p.regex->full_match(path));
    if (hit) return &p;
  }
  return static_cast<const PatternEntry*>(nullptr);
}

struct ParsedConfig {
  LoraAdapterConfig cfg;
  ModuleMatcher targets;
  ModuleMatcher excludes;
  std::vector<PatternEntry> rank_pattern;
  std::vector<PatternEntry> alpha_pattern;
};

// Fields that change the forward in ways we do not implement.
Status refuse_unsupported(const ojson& j) {
  auto truthy = [&](const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return false;
    if (it->is_boolean()) return it->get<bool>();
    if (it->is_array() || it->is_object() || it->is_string()) return !it->empty();
    if (it->is_number()) return true;
    return false;
  };
  if (truthy("use_dora")) {
    return unimplemented("adapter_config.json: use_dora true (DoRA) is not supported");
  }
  if (truthy("modules_to_save")) {
    return unimplemented("adapter_config.json: modules_to_save " + j["modules_to_save"].dump() +
                         " is not supported (only LoRA A/B weights can be served)");
  }
  if (auto it = j.find("bias"); it != j.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>() != "none") {
      return unimplemented("adapter_config.json: bias " + it->dump() +
                           " is not supported (only \"none\")");
    }
  }
  if (truthy("lora_bias")) {
    return unimplemented("adapter_config.json: lora_bias true is not supported");
  }
  for (const char* key : {"layers_to_transform", "layers_pattern"}) {
    if (truthy(key)) {
      return unimplemented(std::string("adapter_config.json: ") + key + " " + j[key].dump() +
                           " is not supported");
    }
  }
  for (const char* key :
       {"trainable_token_indices", "target_parameters", "alora_invocation_tokens"}) {
    if (truthy(key)) {
      return unimplemented(std::string("adapter_config.json: ") + key + " is not supported");
    }
  }
  return ok_status();
}

StatusOr<ParsedConfig> parse_adapter_config(const std::string& text) {
  ojson j;
  try {
    j = ojson::parse(text);
  } catch (const ojson::exception& e) {
    return invalid_argument(std::string("adapter_config.json is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return invalid_argument("adapter_config.json is not a JSON object");
  auto pt = j.find("peft_type");
  if (pt == j.end() || !pt->is_string()) {
    return invalid_argument("adapter_config.json: missing field peft_type");
  }
  if (pt->get<std::string>() != "LORA") {
    return unimplemented("adapter_config.json: peft_type \"" + pt->get<std::string>() +
                         "\" is not supported (only \"LORA\")");
  }
  LS_RETURN_IF_ERROR(refuse_unsupported(j));

  ParsedConfig p;
  p.cfg.r = 8;  // PEFT's defaults when a field is absent
  p.cfg.lora_alpha = 8;
  if (auto it = j.find("r"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() <= 0 || it->get<int64_t>() > kMaxRank) {
      return invalid_argument("adapter_config.json: r must be an integer in [1, " +
                              std::to_string(kMaxRank) + "], got " + it->dump());
    }
    p.cfg.r = it->get<int64_t>();
  }
  if (auto it = j.find("lora_alpha"); it != j.end() && !it->is_null()) {
    if (!it->is_number()) {
      return invalid_argument("adapter_config.json: lora_alpha must be a number, got " +
                              it->dump());
    }
    p.cfg.lora_alpha = it->get<double>();
    if (!std::isfinite(p.cfg.lora_alpha)) {
      return invalid_argument("adapter_config.json: lora_alpha is not a finite number: " +
                              it->dump());
    }
  }
  if (auto it = j.find("use_rslora"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) {
      return invalid_argument("adapter_config.json: use_rslora must be true or false");
    }
    p.cfg.use_rslora = it->get<bool>();
  }
  LS_RETURN_IF_ERROR(parse_matcher(j, "target_modules", &p.targets, &p.cfg));
  if (!p.targets.set) return invalid_argument("adapter_config.json: missing field target_modules");
  LS_RETURN_IF_ERROR(parse_matcher(j, "exclude_modules", &p.excludes, nullptr));
  LS_RETURN_IF_ERROR(parse_pattern(j, "rank_pattern", true, &p.rank_pattern));
  LS_RETURN_IF_ERROR(parse_pattern(j, "alpha_pattern", false, &p.alpha_pattern));
  // fan_in_fan_out: PEFT resets it to false for nn.Linear (all Llama
  // projections), so the saved tensors are [r, in] / [out, r] either way.
  return p;
}

// "base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight"
struct ParsedName {
  int64_t layer = -1;
  LoraModule module = LoraModule::kQ;
  bool is_a = false;
  std::string module_path;  // "model.layers.{i}.self_attn.q_proj"
};

bool parse_tensor_name(const std::string& name, ParsedName* out) {
  static const std::string kPrefix = "base_model.model.";
  std::string rest;
  if (!starts_with(name, kPrefix)) return false;
  rest = name.substr(kPrefix.size());
  if (ends_with(rest, ".lora_A.weight")) {
    out->is_a = true;
    rest.resize(rest.size() - std::string(".lora_A.weight").size());
  } else if (ends_with(rest, ".lora_B.weight")) {
    out->is_a = false;
    rest.resize(rest.size() - std::string(".lora_B.weight").size());
  } else {
    return false;
  }
  out->module_path = rest;
  static const std::string kLayers = "model.layers.";
  if (!starts_with(rest, kLayers)) return false;
  size_t pos = kLayers.size();
  size_t dot = rest.find('.', pos);
  if (dot == std::string::npos || dot == pos || dot - pos > 9) return false;
  int64_t layer = 0;
  for (size_t i = pos; i < dot; ++i) {
    if (rest[i] < '0' || rest[i] > '9') return false;
    layer = layer * 10 + (rest[i] - '0');
  }
  if (dot - pos > 1 && rest[pos] == '0') return false;  // "01" is not a layer index
  const std::string tail = rest.substr(dot + 1);
  for (int m = 0; m < kNumLoraModules; ++m) {
    const std::string parent = m <= static_cast<int>(LoraModule::kO) ? "self_attn." : "mlp.";
    if (tail == parent + kModuleNames[m]) {
      out->layer = layer;
      out->module = static_cast<LoraModule>(m);
      return true;
    }
  }
  return false;
}

struct PendingPair {
  const TensorInfo* a = nullptr;
  const TensorInfo* b = nullptr;
  std::string module_path;
};

}  // namespace

const char* lora_module_name(LoraModule m) {
  const int i = static_cast<int>(m);
  return i >= 0 && i < kNumLoraModules ? kModuleNames[i] : "?";
}

int64_t lora_module_in_dim(const ModelConfig& c, LoraModule m) {
  switch (m) {
    case LoraModule::kQ:
    case LoraModule::kK:
    case LoraModule::kV:
    case LoraModule::kGate:
    case LoraModule::kUp:
      return c.hidden_size;
    case LoraModule::kO:
      return c.q_dim();
    case LoraModule::kDown:
      return c.intermediate_size;
  }
  return 0;
}

int64_t lora_module_out_dim(const ModelConfig& c, LoraModule m) {
  switch (m) {
    case LoraModule::kQ:
      return c.q_dim();
    case LoraModule::kK:
    case LoraModule::kV:
      return c.kv_dim();
    case LoraModule::kO:
    case LoraModule::kDown:
      return c.hidden_size;
    case LoraModule::kGate:
    case LoraModule::kUp:
      return c.intermediate_size;
  }
  return 0;
}

size_t LoraAdapter::weight_bytes() const {
  size_t n = 0;
  for (const auto& layer : layers_) {
    for (const LoraWeights& w : layer) n += (w.a.size() + w.bt.size()) * sizeof(float);
  }
  return n;
}

namespace {

using LayerArray = std::vector<std::array<LoraWeights, kNumLoraModules>>;

// A NaN or infinity in a LoRA weight (any dtype: bf16/f16 ones convert to
// f32 NaN/inf) would poison every token of every request using the adapter.
Status check_finite(const TensorInfo& t, const std::vector<float>& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isfinite(v[i])) continue;
    const int64_t cols = t.shape.size() == 2 && t.shape[1] > 0 ? t.shape[1] : 1;
    const int64_t row = static_cast<int64_t>(i) / cols, col = static_cast<int64_t>(i) % cols;
    return invalid_argument("tensor " + t.name + " (" + dtype_name(t.dtype) + ") holds " +
                            (std::isnan(v[i]) ? "NaN" : "an infinity") + " at [" +
                            std::to_string(row) + ", " + std::to_string(col) +
                            "]; LoRA weights must be finite");
  }
  return ok_status();
}

// Validates `file` against the adapter config and the base model, then
// converts each (layer, module) pair to fp32 A [rank, in] and Bt [rank, out].
Status build_adapter(const std::string& config_text, const SafetensorsFile& file,
                     const ModelConfig& base, LayerArray* layers, int32_t* max_rank,
                     uint32_t* mask) {
  LS_ASSIGN_OR_RETURN(ParsedConfig pc, parse_adapter_config(config_text));

  std::map<std::pair<int64_t, int>, PendingPair> pairs;
  for (const auto& [name, info] : file.tensors()) {
    ParsedName pn;
    if (!parse_tensor_name(name, &pn)) {
      return invalid_argument(
          "unrecognized tensor " + name +
          " (expected base_model.model.model.layers.{i}.{self_attn,mlp}.{module}.lora_{A,B}"
          ".weight for a Llama projection)");
    }
    if (pn.layer >= base.num_hidden_layers) {
      return failed_precondition("tensor " + name + " is for layer " + std::to_string(pn.layer) +
                                 " but the base model has " +
                                 std::to_string(base.num_hidden_layers) + " layers");
    }
    LS_ASSIGN_OR_RETURN(const bool targeted, pc.targets.matches(pn.module_path));
    LS_ASSIGN_OR_RETURN(const bool excluded, pc.excludes.matches(pn.module_path));
    if (!targeted || excluded) {
      return invalid_argument("tensor " + name + " adapts module " + pn.module_path +
                              ", which target_modules does not select");
    }
    PendingPair& p = pairs[{pn.layer, static_cast<int>(pn.module)}];
    p.module_path = pn.module_path;
    (pn.is_a ? p.a : p.b) = &info;
  }
  if (pairs.empty()) return invalid_argument("adapter has no LoRA tensors");

  layers->assign(static_cast<size_t>(base.num_hidden_layers), {});
  *max_rank = 0;
  *mask = 0;
  for (const auto& [key, p] : pairs) {
    const std::string prefix = "base_model.model." + p.module_path;
    if (p.a == nullptr) {
      return invalid_argument("tensor " + prefix + ".lora_B.weight has no matching " + prefix +
                              ".lora_A.weight");
    }
    if (p.b == nullptr) {
      return invalid_argument("tensor " + p.a->name + " has no matching " + prefix +
                              ".lora_B.weight");
    }
    const LoraModule m = static_cast<LoraModule>(key.second);
    const int64_t in = lora_module_in_dim(base, m);
    const int64_t out = lora_module_out_dim(base, m);
    int64_t rank = pc.cfg.r;
    LS_ASSIGN_OR_RETURN(const PatternEntry* rank_entry,
                        find_pattern(pc.rank_pattern, p.module_path));
    if (rank_entry != nullptr) rank = static_cast<int64_t>(rank_entry->value);
    double alpha = pc.cfg.lora_alpha;
    std::string alpha_field = "lora_alpha";
    LS_ASSIGN_OR_RETURN(const PatternEntry* alpha_entry,
                        find_pattern(pc.alpha_pattern, p.module_path));
    if (alpha_entry != nullptr) {
      alpha = alpha_entry->value;
      alpha_field = "alpha_pattern[\"" + alpha_entry->key + "\"]";
    }
    if (rank <= 0) {
      return invalid_argument("adapter_config.json gives module " + p.module_path + " rank " +
                              std::to_string(rank));
    }
    const double scale = pc.cfg.use_rslora ? alpha / std::sqrt(static_cast<double>(rank))
                                           : alpha / static_cast<double>(rank);
    if (!(std::fabs(scale) <= kMaxAbsScale)) {
      return invalid_argument("adapter_config.json: " + alpha_field + " " + number_text(alpha) +
                              " gives module " + p.module_path + " the scale " +
                              number_text(scale) + " (" + alpha_field +
                              (pc.cfg.use_rslora ? " / sqrt(r), use_rslora" : " / r") + ", r " +
                              std::to_string(rank) + "), beyond the bound |scale| <= " +
                              number_text(kMaxAbsScale));
    }
    const std::vector<int64_t>& as = p.a->shape;
    const std::vector<int64_t>& bs = p.b->shape;
    if (as.size() != 2) {
      return invalid_argument("tensor " + p.a->name + " has shape " + shape_string(as) +
                              ", expected [" + std::to_string(rank) + ", " + std::to_string(in) +
                              "]");
    }
    if (bs.size() != 2) {
      return invalid_argument("tensor " + p.b->name + " has shape " + shape_string(bs) +
                              ", expected [" + std::to_string(out) + ", " + std::to_string(rank) +
                              "]");
    }
    if (as[1] != in) {
      return failed_precondition("tensor " + p.a->name + " has shape " + shape_string(as) +
                                 " but the base model's " + lora_module_name(m) + " takes " +
                                 std::to_string(in) + " inputs (expected [" + std::to_string(rank) +
                                 ", " + std::to_string(in) + "])");
    }
    if (bs[0] != out) {
      return failed_precondition("tensor " + p.b->name + " has shape " + shape_string(bs) +
                                 " but the base model's " + lora_module_name(m) + " has " +
                                 std::to_string(out) + " outputs (expected [" +
                                 std::to_string(out) + ", " + std::to_string(rank) + "])");
    }
    if (as[0] != rank) {
      return invalid_argument("tensor " + p.a->name + " has shape " + shape_string(as) +
                              " but adapter_config.json gives rank " + std::to_string(rank) +
                              " (expected [" + std::to_string(rank) + ", " + std::to_string(in) +
                              "])");
    }
    if (bs[1] != rank) {
      return invalid_argument("tensor " + p.b->name + " has shape " + shape_string(bs) +
                              " but adapter_config.json gives rank " + std::to_string(rank) +
                              " (expected [" + std::to_string(out) + ", " + std::to_string(rank) +
                              "])");
    }

    LoraWeights& w = (*layers)[static_cast<size_t>(key.first)][key.second];
    w.rank = static_cast<int32_t>(rank);
    w.scale = static_cast<float>(scale);
    w.a.resize(static_cast<size_t>(rank * in));
    convert_to_f32(p.a->dtype, p.a->data, w.a.data(), w.a.size());
    LS_RETURN_IF_ERROR(check_finite(*p.a, w.a));
    std::vector<float> b(static_cast<size_t>(out * rank));
    convert_to_f32(p.b->dtype, p.b->data, b.data(), b.size());
    LS_RETURN_IF_ERROR(check_finite(*p.b, b));
    w.bt.resize(static_cast<size_t>(rank * out));
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t k = 0; k < rank; ++k) w.bt[k * out + o] = b[o * rank + k];
    }
    *max_rank = std::max(*max_rank, w.rank);
    *mask |= 1u << key.second;
  }
  return ok_status();
}

}  // namespace

StatusOr<std::unique_ptr<LoraAdapter>> LoraAdapter::load_dir(const std::string& dir,
                                                             const ModelConfig& base) {
  const std::string config_path = dir + "/adapter_config.json";
  std::ifstream in(config_path, std::ios::binary);
  if (!in) return not_found("cannot open " + config_path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string weights_path = dir + "/adapter_model.safetensors";
  if (!file_exists(weights_path) && file_exists(dir + "/adapter_model.bin")) {
    return unimplemented(dir +
                         " holds a pickled adapter_model.bin; only adapter_model.safetensors "
                         "is supported (save with safe_serialization=True)");
  }
  LS_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(weights_path));
  std::unique_ptr<LoraAdapter> a(new LoraAdapter());
  Status built = build_adapter(ss.str(), *file, base, &a->layers_, &a->max_rank_, &a->module_mask_);
  if (!built.ok()) return built.with_context("adapter " + dir);
  return a;
}

StatusOr<std::unique_ptr<LoraAdapter>> LoraAdapter::load_bytes(const std::string& config_json,
                                                               std::string safetensors_bytes,
                                                               const ModelConfig& base,
                                                               const std::string& label) {
  LS_ASSIGN_OR_RETURN(auto file, SafetensorsFile::from_bytes(std::move(safetensors_bytes),
                                                            "adapter_model.safetensors of " + label));
  std::unique_ptr<LoraAdapter> a(new LoraAdapter());
  Status built =
      build_adapter(config_json, *file, base, &a->layers_, &a->max_rank_, &a->module_mask_);
  if (!built.ok()) return built.with_context("adapter " + label);
  return a;
}

}  // namespace loraserve
