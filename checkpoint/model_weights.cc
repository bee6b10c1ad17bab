#include "checkpoint/model_weights.h"

#include "common/file_util.h"

#include <sys/stat.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace loraserve {
namespace {

using json = nlohmann::json;

// name -> tensor over all files of the checkpoint.
using TensorIndex = std::map<std::string, const TensorInfo*>;

// Parses model.safetensors.index.json and opens each shard it names once.
Status open_sharded(const std::string& dir, const std::string& index_path,
                    std::vector<std::unique_ptr<SafetensorsFile>>* files, TensorIndex* index) {
  LS_ASSIGN_OR_RETURN(std::string text, read_file(index_path));
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return data_loss(index_path + " is not valid JSON: " + e.what());
  }
  auto wm = j.is_object() ? j.find("weight_map") : j.end();
  if (wm == j.end() || !wm->is_object()) {
    return data_loss(index_path + ": missing object weight_map");
  }
  std::map<std::string, const SafetensorsFile*> shards;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    const std::string& name = it.key();
    if (!it.value().is_string()) {
      return data_loss(index_path + ": weight_map entry for " + name + " is not a file name");
    }
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      return invalid_argument(index_path + ": weight_map maps " + name + " to \"" + shard +
                              "\", which is not a file in " + dir);
    }
    auto found = shards.find(shard);
    if (found == shards.end()) {
      auto opened = SafetensorsFile::open(dir + "/" + shard);
      if (!opened.ok()) {
        return opened.status().with_context("shard " + shard + " (holding " + name +
                                            " per model.safetensors.index.json)");
      }
      files->push_back(std::move(opened).value());
      found = shards.emplace(shard, files->back().get()).first;
    }
    const TensorInfo* t = found->second->find(name);
    if (t == nullptr) {
      return data_loss("model.safetensors.index.json maps tensor " + name + " to shard " + shard +
                       ", which does not contain it");
    }
    (*index)[name] = t;
  }
  return ok_status();
}

struct Expectation {
  const TensorInfo** slot;
  std::vector<int64_t> shape;
};

}  // namespace

StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::open(const std::string& dir) {
  std::unique_ptr<ModelWeights> w(new ModelWeights());
  LS_ASSIGN_OR_RETURN(w->config_, ModelConfig::from_file(dir + "/config.json"));
  const ModelConfig& c = w->config_;

  TensorIndex index;
  const std::string single = dir + "/model.safetensors";
  const std::string sharded = dir + "/model.safetensors.index.json";
  if (file_exists(single)) {
    LS_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(single));
    for (const auto& [name, info] : file->tensors()) index[name] = &info;
    w->files_.push_back(std::move(file));
  } else if (file_exists(sharded)) {
    LS_RETURN_IF_ERROR(open_sharded(dir, sharded, &w->files_, &index));
  } else {
    if (file_exists(dir + "/pytorch_model.bin") ||
        file_exists(dir + "/pytorch_model.bin.index.json")) {
      return unimplemented(dir +
                           " holds a pickled pytorch_model.bin checkpoint; only safetensors "
                           "is supported (convert it with transformers' save_pretrained)");
    }
    return not_found("no model.safetensors or model.safetensors.index.json in " + dir);
  }

  const int64_t h = c.hidden_size, inter = c.intermediate_size;
  std::vector<std::pair<std::string, Expectation>> expected;
  expected.push_back({"model.embed_tokens.weight", {&w->embed_tokens_, {c.vocab_size, h}}});
  expected.push_back({"model.norm.weight", {&w->final_norm_, {h}}});
  const bool has_lm_head = index.count("lm_head.weight") > 0;
  if (!c.tie_word_embeddings || has_lm_head) {
    expected.push_back({"lm_head.weight", {&w->lm_head_, {c.vocab_size, h}}});
  }
  w->layers_.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    LayerTensors& l = w->layers_[static_cast<size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    expected.push_back({p + "input_layernorm.weight", {&l.input_layernorm, {h}}});
    expected.push_back({p + "self_attn.q_proj.weight", {&l.q_proj, {c.q_dim(), h}}});
    expected.push_back({p + "self_attn.k_proj.weight", {&l.k_proj, {c.kv_dim(), h}}});
    expected.push_back({p + "self_attn.v_proj.weight", {&l.v_proj, {c.kv_dim(), h}}});
    expected.push_back({p + "self_attn.o_proj.weight", {&l.o_proj, {h, c.q_dim()}}});
    expected.push_back({p + "post_attention_layernorm.weight", {&l.post_attention_layernorm, {h}}});
    expected.push_back({p + "mlp.gate_proj.weight", {&l.gate_proj, {inter, h}}});
    expected.push_back({p + "mlp.up_proj.weight", {&l.up_proj, {inter, h}}});
    expected.push_back({p + "mlp.down_proj.weight", {&l.down_proj, {h, inter}}});
    if (c.qkv_bias()) {
      expected.push_back({p + "self_attn.q_proj.bias", {&l.q_bias, {c.q_dim()}}});
      expected.push_back({p + "self_attn.k_proj.bias", {&l.k_bias, {c.kv_dim()}}});
      expected.push_back({p + "self_attn.v_proj.bias", {&l.v_bias, {c.kv_dim()}}});
    }
    if (c.qk_norm()) {
      expected.push_back({p + "self_attn.q_norm.weight", {&l.q_norm, {c.head_dim}}});
      expected.push_back({p + "self_attn.k_norm.weight", {&l.k_norm, {c.head_dim}}});
    }
  }

  std::set<std::string> used;
  for (const auto& [name, e] : expected) {
    auto it = index.find(name);
    if (it == index.end()) {
      return invalid_argument("checkpoint in " + dir + " has no tensor " + name);
    }
    if (it->second->shape != e.shape) {
      return invalid_argument("tensor " + name + " has shape " + shape_string(it->second->shape) +
                              ", config.json implies " + shape_string(e.shape));
    }
    *e.slot = it->second;
    used.insert(name);
  }
  if (w->lm_head_ == nullptr) w->lm_head_ = w->embed_tokens_;  // tied

  for (const auto& [name, info] : index) {
    if (used.count(name) || ends_with(name, ".rotary_emb.inv_freq")) continue;
    return invalid_argument("checkpoint in " + dir + " has unexpected tensor " + name + " " +
                            shape_string(info->shape) + " (not part of a " + c.architecture() +
                            " model with " + std::to_string(c.num_hidden_layers) + " layers)");
  }
  return w;
}

}  // namespace loraserve
