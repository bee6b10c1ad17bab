#include "checkpoint/model_config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace loraserve {
namespace {

// meta-llama/Llama-2-7b-hf config.json.
const char* kLlama2 = R"({
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 4096,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.31.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

// meta-llama/Llama-3.1-8B-Instruct config.json.
const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "use_cache": true,
  "vocab_size": 128256
})";

// mistralai/Mistral-7B-v0.1 config.json (sliding_window 4096 < 32768).
const char* kMistral = R"({
  "architectures": ["MistralForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "sliding_window": 4096,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "use_cache": true,
  "vocab_size": 32000
})";

using json = nlohmann::json;

// A minimal llama config with only the required fields.
json minimal() {
  return json{{"model_type", "llama"},  {"hidden_size", 64},        {"intermediate_size", 128},
              {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"vocab_size", 100}};
}

StatusOr<ModelConfig> parse(const json& j) { return ModelConfig::from_json_text(j.dump()); }

void expect_error(const json& j, StatusCode code, const std::string& needle) {
  auto c = parse(j);
  ASSERT_FALSE(c.ok()) << j.dump();
  EXPECT_EQ(c.status().code(), code) << c.status();
  EXPECT_NE(c.status().message().find(needle), std::string::npos)
      << "'" << needle << "' not in: " << c.status();
}

TEST(ModelConfig, ParsesLlama2) {
  auto c = ModelConfig::from_json_text(kLlama2);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->intermediate_size, 11008);
  EXPECT_EQ(c->num_hidden_layers, 32);
  EXPECT_EQ(c->num_attention_heads, 32);
  EXPECT_EQ(c->num_key_value_heads, 32);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->q_dim(), 4096);
  EXPECT_EQ(c->kv_dim(), 4096);
  EXPECT_EQ(c->vocab_size, 32000);
  EXPECT_EQ(c->max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);  // absent -> default
  EXPECT_FALSE(c->rope_scaling.has_value());
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_id, 2);
  EXPECT_EQ(c->torch_dtype, "float16");
}

TEST(ModelConfig, ParsesLlama3RopeScalingAndGqa) {
  auto c = ModelConfig::from_json_text(kLlama31);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->kv_dim(), 1024);
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  ASSERT_TRUE(c->rope_scaling.has_value());
  EXPECT_EQ(c->rope_scaling->factor, 8.0f);
  EXPECT_EQ(c->rope_scaling->low_freq_factor, 1.0f);
  EXPECT_EQ(c->rope_scaling->high_freq_factor, 4.0f);
  EXPECT_EQ(c->rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_id, 128001);  // first of the list
  EXPECT_EQ(c->max_position_embeddings, 131072);
}

TEST(ModelConfig, AcceptsOlderTypeKeyForLlama3Scaling) {
  json j = json::parse(kLlama31);
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "llama3";
  j["rope_scaling"]["factor"] = 32.0;
  auto c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->rope_scaling.has_value());
  EXPECT_EQ(c->rope_scaling->factor, 32.0f);
}

TEST(ModelConfig, GqaDefaults) {
  auto c = parse(minimal());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_key_value_heads, 4);  // = num_attention_heads
  EXPECT_EQ(c->head_dim, 16);            // = hidden / heads
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_EQ(c->eos_token_id, -1);

  json j = minimal();
  j["num_key_value_heads"] = 2;
  j["head_dim"] = 32;  // explicit head_dim (Mistral-Nemo style: heads * head_dim != hidden)
  j["tie_word_embeddings"] = true;
  c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->q_dim(), 128);
  EXPECT_EQ(c->kv_dim(), 64);
  EXPECT_TRUE(c->tie_word_embeddings);

  j = minimal();
  j["num_key_value_heads"] = nullptr;  // null counts as absent
  j["head_dim"] = nullptr;
  c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
}

TEST(ModelConfig, MissingRequiredFieldIsNamed) {
  for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "vocab_size"}) {
    json j = minimal();
    j.erase(field);
    expect_error(j, StatusCode::kInvalidArgument, std::string("missing field ") + field);
  }
  json j = minimal();
  j.erase("model_type");
  expect_error(j, StatusCode::kInvalidArgument, "model_type");
  j = minimal();
  j["hidden_size"] = "4096";
  expect_error(j, StatusCode::kInvalidArgument, "hidden_size must be an integer");
  j = minimal();
  j["vocab_size"] = 0;
  expect_error(j, StatusCode::kInvalidArgument, "vocab_size must be positive");
}

TEST(ModelConfig, UnsupportedModelType) {
  json j = minimal();
  j["model_type"] = "gemma";
  expect_error(j, StatusCode::kUnimplemented, "gemma");
}

TEST(ModelConfig, UnsupportedRopeScaling) {
  for (const char* type : {"yarn", "linear", "dynamic", "longrope"}) {
    json j = minimal();
    j["rope_scaling"] = {{"type", type}, {"factor", 4.0}};
    expect_error(j, StatusCode::kUnimplemented, std::string("\"") + type + "\"");
  }
  json j = minimal();
  j["rope_scaling"] = {
      {"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 4096}};
  expect_error(j, StatusCode::kUnimplemented, "rope_scaling type \"yarn\"");
  j = minimal();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};  // incomplete
  expect_error(j, StatusCode::kInvalidArgument, "low_freq_factor");
  j = minimal();
  j["rope_scaling"] = {{"rope_type", "default"}};
  auto c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->rope_scaling.has_value());
}

TEST(ModelConfig, UnsupportedArchitectureVariants) {
  json j = minimal();
  j["hidden_act"] = "gelu";
  expect_error(j, StatusCode::kUnimplemented, "hidden_act");
  j = minimal();
  j["attention_bias"] = true;
  expect_error(j, StatusCode::kUnimplemented, "attention_bias");
  j = minimal();
  j["mlp_bias"] = true;
  expect_error(j, StatusCode::kUnimplemented, "mlp_bias");
  j = minimal();
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["hidden_act"] = "silu";
  EXPECT_TRUE(parse(j).ok());
}

TEST(ModelConfig, DivisibilityChecks) {
  json j = minimal();
  j["num_key_value_heads"] = 3;
  expect_error(j, StatusCode::kInvalidArgument, "num_key_value_heads");
  j = minimal();
  j["head_dim"] = 15;
  expect_error(j, StatusCode::kInvalidArgument, "head_dim must be even");
  j = minimal();
  j["hidden_size"] = 66;  // 66 / 4 heads, no head_dim
  expect_error(j, StatusCode::kInvalidArgument, "not a multiple of num_attention_heads");
}

TEST(ModelConfig, MistralSlidingWindow) {
  expect_error(json::parse(kMistral), StatusCode::kUnimplemented, "sliding_window 4096");
  json j = json::parse(kMistral);
  j["sliding_window"] = nullptr;  // Mistral-7B-v0.2 and later
  auto c = parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "mistral");
  EXPECT_EQ(c->num_key_value_heads, 8);
  j["sliding_window"] = 32768;  // covers every position: plain causal attention
  EXPECT_TRUE(parse(j).ok());
}

TEST(ModelConfig, NotJson) {
  auto c = ModelConfig::from_json_text("{\"model_type\": ");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  c = ModelConfig::from_json_text("[1]");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
}

void expect_same(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  ASSERT_EQ(a.rope_scaling.has_value(), b.rope_scaling.has_value());
  if (a.rope_scaling) {
    EXPECT_EQ(a.rope_scaling->factor, b.rope_scaling->factor);
    EXPECT_EQ(a.rope_scaling->low_freq_factor, b.rope_scaling->low_freq_factor);
    EXPECT_EQ(a.rope_scaling->high_freq_factor, b.rope_scaling->high_freq_factor);
    EXPECT_EQ(a.rope_scaling->original_max_position_embeddings,
              b.rope_scaling->original_max_position_embeddings);
  }
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_id, b.eos_token_id);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
}

TEST(ModelConfig, ToJsonRoundTrips) {
  for (const char* text : {kLlama2, kLlama31}) {
    auto a = ModelConfig::from_json_text(text);
    ASSERT_TRUE(a.ok()) << a.status();
    const std::string out = a->to_json_text();
    auto b = ModelConfig::from_json_text(out);
    ASSERT_TRUE(b.ok()) << b.status() << "\n" << out;
    expect_same(*a, *b);
    json j = json::parse(out);
    EXPECT_EQ(j["architectures"][0], "LlamaForCausalLM");
    EXPECT_EQ(j["hidden_act"], "silu");
  }
  json m = json::parse(kMistral);
  m["sliding_window"] = nullptr;
  m["tie_word_embeddings"] = true;
  m["rms_norm_eps"] = 1.234567e-6;
  auto a = parse(m);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = ModelConfig::from_json_text(a->to_json_text());
  ASSERT_TRUE(b.ok()) << b.status();
  expect_same(*a, *b);
  EXPECT_EQ(json::parse(a->to_json_text())["architectures"][0], "MistralForCausalLM");
}

TEST(ModelConfig, FromFile) {
  char tmpl[] = "/tmp/loraserve-cfg-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  { std::ofstream(dir + "/config.json") << kLlama31; }
  auto c = ModelConfig::from_file(dir + "/config.json");
  EXPECT_TRUE(c.ok()) << c.status();
  auto missing = ModelConfig::from_file(dir + "/nope.json");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  { std::ofstream(dir + "/config.json") << "{\"model_type\": \"gemma\"}"; }
  c = ModelConfig::from_file(dir + "/config.json");
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(c.status().message().find(dir + "/config.json"), std::string::npos) << c.status();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace loraserve
