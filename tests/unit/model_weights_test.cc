#include "tests/support/test_util.h"
#include "checkpoint/model_weights.h"
#include "tests/support/tiny_model_config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace loraserve {
namespace {

using testing_util::TempDir;
using testing_util::read_file;
using testing_util::write_file;

using json = nlohmann::json;

ModelConfig small_config(bool tied = false) {
  ModelConfig c = tiny_llama_config();
  c.tie_word_embeddings = tied;
  return c;
}

// Every tensor of a checkpoint for `c`, bf16, with values derived from the
// name so shards can be compared with the single file.
std::vector<TensorToWrite> model_tensors(const ModelConfig& c, bool with_lm_head) {
  std::vector<TensorToWrite> ts;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::string bytes(static_cast<size_t>(n) * 2, '\0');
    uint16_t* p = reinterpret_cast<uint16_t*>(bytes.data());
    for (int64_t i = 0; i < n; ++i) {
      p[i] = f32_to_bf16(static_cast<float>((i + name.size()) % 17) / 8.0f - 1.0f);
    }
    ts.push_back({name, DType::kBF16, std::move(shape), std::move(bytes)});
  };
  const int64_t h = c.hidden_size, in = c.intermediate_size;
  add("model.embed_tokens.weight", {c.vocab_size, h});
  add("model.norm.weight", {h});
  if (with_lm_head) add("lm_head.weight", {c.vocab_size, h});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {h});
    add(p + "self_attn.q_proj.weight", {c.q_dim(), h});
    add(p + "self_attn.k_proj.weight", {c.kv_dim(), h});
    add(p + "self_attn.v_proj.weight", {c.kv_dim(), h});
    add(p + "self_attn.o_proj.weight", {h, c.q_dim()});
    add(p + "post_attention_layernorm.weight", {h});
    add(p + "mlp.gate_proj.weight", {in, h});
    add(p + "mlp.up_proj.weight", {in, h});
    add(p + "mlp.down_proj.weight", {h, in});
  }
  return ts;
}

void write_config(const std::string& dir, const ModelConfig& c) {
  std::ofstream(dir + "/config.json") << c.to_json_text();
}

void write_model(const std::string& dir, const ModelConfig& c,
                 const std::vector<TensorToWrite>& ts) {
  write_config(dir, c);
  ASSERT_TRUE(write_safetensors(dir + "/model.safetensors", ts).ok());
}

std::vector<TensorToWrite> without(std::vector<TensorToWrite> ts, const std::string& name) {
  ts.erase(
      std::remove_if(ts.begin(), ts.end(), [&](const TensorToWrite& t) { return t.name == name; }),
      ts.end());
  return ts;
}

std::string bytes_of(const TensorInfo* t) {
  return std::string(static_cast<const char*>(t->data), t->nbytes);
}

void expect_error(const std::string& dir, StatusCode code, const std::string& needle) {
  auto w = ModelWeights::open(dir);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), code) << w.status();
  EXPECT_NE(w.status().message().find(needle), std::string::npos)
      << "'" << needle << "' not in: " << w.status();
}

TEST(ModelWeights, OpensSingleFileCheckpoint) {
  TempDir dir;
  const ModelConfig c = small_config();
  write_model(dir.path(), c, model_tensors(c, true));
  auto w = ModelWeights::open(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->config().hidden_size, 16);
  EXPECT_EQ((*w)->config().num_key_value_heads, 2);
  ASSERT_NE((*w)->embed_tokens(), nullptr);
  EXPECT_EQ((*w)->embed_tokens()->name, "model.embed_tokens.weight");
  EXPECT_EQ((*w)->embed_tokens()->shape, (std::vector<int64_t>{32, 16}));
  EXPECT_EQ((*w)->final_norm()->name, "model.norm.weight");
  EXPECT_EQ((*w)->lm_head()->name, "lm_head.weight");
  ASSERT_EQ((*w)->layers().size(), 2u);
  const LayerTensors& l1 = (*w)->layers()[1];
  EXPECT_EQ(l1.q_proj->name, "model.layers.1.self_attn.q_proj.weight");
  EXPECT_EQ(l1.k_proj->shape, (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(l1.v_proj->shape, (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(l1.o_proj->shape, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(l1.gate_proj->shape, (std::vector<int64_t>{24, 16}));
  EXPECT_EQ(l1.up_proj->name, "model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(l1.down_proj->shape, (std::vector<int64_t>{16, 24}));
  EXPECT_EQ(l1.input_layernorm->name, "model.layers.1.input_layernorm.weight");
  EXPECT_EQ(l1.post_attention_layernorm->name, "model.layers.1.post_attention_layernorm.weight");
  // Values are the bytes written.
  const auto ts = model_tensors(c, true);
  for (const auto& t : ts) {
    if (t.name == "model.layers.1.mlp.down_proj.weight") {
      EXPECT_EQ(bytes_of(l1.down_proj), t.bytes);
    }
  }
}

TEST(ModelWeights, ShardedCheckpointLoadsSameTensors) {
  TempDir single, sharded;
  const ModelConfig c = small_config();
  const auto ts = model_tensors(c, true);
  write_model(single.path(), c, ts);

  // Layer 0 and the embedding in shard 1, the rest in shard 2.
  std::vector<TensorToWrite> s1, s2;
  json weight_map = json::object();
  for (const auto& t : ts) {
    const bool first =
        t.name.find("layers.0.") != std::string::npos || t.name == "model.embed_tokens.weight";
    (first ? s1 : s2).push_back(t);
    weight_map[t.name] =
        first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  write_config(sharded.path(), c);
  ASSERT_TRUE(write_safetensors(sharded.path() + "/model-00001-of-00002.safetensors", s1).ok());
  ASSERT_TRUE(write_safetensors(sharded.path() + "/model-00002-of-00002.safetensors", s2).ok());
  json index = {{"metadata", {{"total_size", 12345}}}, {"weight_map", weight_map}};
  std::ofstream(sharded.path() + "/model.safetensors.index.json") << index.dump(2);

  auto a = ModelWeights::open(single.path());
  auto b = ModelWeights::open(sharded.path());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(bytes_of((*a)->embed_tokens()), bytes_of((*b)->embed_tokens()));
  EXPECT_EQ(bytes_of((*a)->lm_head()), bytes_of((*b)->lm_head()));
  EXPECT_EQ(bytes_of((*a)->final_norm()), bytes_of((*b)->final_norm()));
  for (size_t i = 0; i < 2; ++i) {
    const LayerTensors& la = (*a)->layers()[i];
    const LayerTensors& lb = (*b)->layers()[i];
    for (auto member :
         {&LayerTensors::input_layernorm, &LayerTensors::q_proj, &LayerTensors::k_proj,
          &LayerTensors::v_proj, &LayerTensors::o_proj, &LayerTensors::post_attention_layernorm,
          &LayerTensors::gate_proj, &LayerTensors::up_proj, &LayerTensors::down_proj}) {
      EXPECT_EQ((la.*member)->name, (lb.*member)->name);
      EXPECT_EQ((la.*member)->shape, (lb.*member)->shape);
      EXPECT_EQ(bytes_of(la.*member), bytes_of(lb.*member)) << (la.*member)->name;
    }
  }
  // Different shards really back the two layers.
  EXPECT_NE((*b)->layers()[0].q_proj->data, nullptr);

  // The index naming a tensor its shard lacks, or a shard that is missing.
  weight_map["model.layers.0.self_attn.q_proj.weight"] = "model-00002-of-00002.safetensors";
  std::ofstream(sharded.path() + "/model.safetensors.index.json")
      << json{{"weight_map", weight_map}}.dump();
  expect_error(sharded.path(), StatusCode::kDataLoss, "model.layers.0.self_attn.q_proj.weight");
  weight_map["model.layers.0.self_attn.q_proj.weight"] = "model-00003-of-00003.safetensors";
  std::ofstream(sharded.path() + "/model.safetensors.index.json")
      << json{{"weight_map", weight_map}}.dump();
  expect_error(sharded.path(), StatusCode::kNotFound, "model-00003-of-00003.safetensors");
  weight_map["model.layers.0.self_attn.q_proj.weight"] = "../escape.safetensors";
  std::ofstream(sharded.path() + "/model.safetensors.index.json")
      << json{{"weight_map", weight_map}}.dump();
  expect_error(sharded.path(), StatusCode::kInvalidArgument, "../escape.safetensors");
  std::ofstream(sharded.path() + "/model.safetensors.index.json") << "{\"weight_map\": [";
  expect_error(sharded.path(), StatusCode::kDataLoss, "model.safetensors.index.json");
}

TEST(ModelWeights, MissingTensorIsNamed) {
  TempDir dir;
  const ModelConfig c = small_config();
  write_model(dir.path(), c, without(model_tensors(c, true), "model.layers.1.mlp.up_proj.weight"));
  expect_error(dir.path(), StatusCode::kInvalidArgument, "model.layers.1.mlp.up_proj.weight");
}

TEST(ModelWeights, UntiedModelNeedsLmHead) {
  TempDir dir;
  const ModelConfig c = small_config(/*tied=*/false);
  write_model(dir.path(), c, model_tensors(c, /*with_lm_head=*/false));
  expect_error(dir.path(), StatusCode::kInvalidArgument, "lm_head.weight");
}

TEST(ModelWeights, TiedEmbeddings) {
  TempDir dir;
  const ModelConfig c = small_config(/*tied=*/true);
  write_model(dir.path(), c, model_tensors(c, /*with_lm_head=*/false));
  auto w = ModelWeights::open(dir.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->lm_head(), (*w)->embed_tokens());

  // Tied but saved with lm_head anyway: that tensor is used.
  TempDir dir2;
  write_model(dir2.path(), c, model_tensors(c, /*with_lm_head=*/true));
  w = ModelWeights::open(dir2.path());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->lm_head()->name, "lm_head.weight");
}

TEST(ModelWeights, WrongShapeIsNamed) {
  TempDir dir;
  const ModelConfig c = small_config();
  auto ts = model_tensors(c, true);
  for (auto& t : ts) {
    if (t.name == "model.layers.0.self_attn.k_proj.weight") t.shape = {16, 8};  // transposed
  }
  write_model(dir.path(), c, ts);
  expect_error(dir.path(), StatusCode::kInvalidArgument,
               "tensor model.layers.0.self_attn.k_proj.weight has shape [16, 8], config.json "
               "implies [8, 16]");
}

TEST(ModelWeights, UnexpectedTensorIsNamedButRotaryCacheIgnored) {
  TempDir dir;
  const ModelConfig c = small_config();
  auto ts = model_tensors(c, true);
  ts.push_back(
      {"model.layers.0.self_attn.rotary_emb.inv_freq", DType::kF32, {2}, std::string(8, '\0')});
  write_model(dir.path(), c, ts);
  EXPECT_TRUE(ModelWeights::open(dir.path()).ok());

  ts.push_back({"model.layers.2.mlp.up_proj.weight",
                DType::kBF16,
                {24, 16},
                std::string(24 * 16 * 2, '\0')});  // a third layer the config does not have
  write_model(dir.path(), c, ts);
  expect_error(dir.path(), StatusCode::kInvalidArgument, "model.layers.2.mlp.up_proj.weight");
}

TEST(ModelWeights, MissingFilesAndBadConfig) {
  TempDir dir;
  expect_error(dir.path(), StatusCode::kNotFound, "config.json");
  const ModelConfig c = small_config();
  write_config(dir.path(), c);
  expect_error(dir.path(), StatusCode::kNotFound, "model.safetensors");
  std::ofstream(dir.path() + "/config.json") << R"({"model_type": "gpt_neox"})";
  expect_error(dir.path(), StatusCode::kUnimplemented, "gpt_neox");
  // A corrupt checkpoint.
  write_config(dir.path(), c);
  std::ofstream(dir.path() + "/model.safetensors") << "garbage";
  expect_error(dir.path(), StatusCode::kDataLoss, "model.safetensors");
}

}  // namespace
}  // namespace loraserve
