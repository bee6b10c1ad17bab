// config.json of the families beyond Llama 2/3: Qwen2/Qwen2.5 (q/k/v bias),
// Qwen3 (q/k norms, explicit or default head_dim), Mistral-Nemo (head_dim
// with num_heads * head_dim != hidden), as their released files read; what
// is refused (unknown architectures, sliding windows, mismatched names) and
// that to_json_text writes each family back in its own layout.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "checkpoint/model_config.h"

namespace loraserve {
namespace {

using json = nlohmann::json;

// Qwen/Qwen2.5-7B-Instruct config.json.
const char* kQwen25_7B = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 3584,
  "initializer_range": 0.02,
  "intermediate_size": 18944,
  "max_position_embeddings": 32768,
  "max_window_layers": 28,
  "model_type": "qwen2",
  "num_attention_heads": 28,
  "num_hidden_layers": 28,
  "num_key_value_heads": 4,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 131072,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 152064
})";

// Qwen/Qwen3-0.6B config.json: 16 heads of 128 over hidden 1024, tied.
const char* kQwen3_06B = R"({
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 1024,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 40960,
  "max_window_layers": 28,
  "model_type": "qwen3",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": null,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// mistralai/Mistral-Nemo-Instruct-2407 config.json.
const char* kMistralNemo = R"({
  "architectures": ["MistralForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 5120,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 1024000,
  "model_type": "mistral",
  "num_attention_heads": 32,
  "num_hidden_layers": 40,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 131072
})";

StatusOr<ModelConfig> parse(const json& j) { return ModelConfig::from_json_text(j.dump()); }

void expect_error(const json& j, StatusCode code, const std::string& needle) {
  auto c = parse(j);
  ASSERT_FALSE(c.ok()) << j.dump();
  EXPECT_EQ(c.status().code(), code) << c.status();
  EXPECT_NE(c.status().message().find(needle), std::string::npos)
      << "'" << needle << "' not in: " << c.status();
}

TEST(ModelFamilies, Qwen25) {
  auto c = ModelConfig::from_json_text(kQwen25_7B);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, ModelFamily::kQwen2);
  EXPECT_EQ(c->model_type, "qwen2");
  EXPECT_TRUE(c->qkv_bias());
  EXPECT_FALSE(c->qk_norm());
  EXPECT_EQ(c->head_dim, 128);  // 3584 / 28
  EXPECT_EQ(c->q_dim(), 3584);
  EXPECT_EQ(c->kv_dim(), 512);
  EXPECT_EQ(c->rope_theta, 1000000.0);
  EXPECT_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_EQ(c->eos_token_id, 151645);
  EXPECT_STREQ(c->architecture(), "Qwen2ForCausalLM");
}

TEST(ModelFamilies, Qwen3HasExplicitHeadDimAndQkNorm) {
  auto c = ModelConfig::from_json_text(kQwen3_06B);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, ModelFamily::kQwen3);
  EXPECT_TRUE(c->qk_norm());
  EXPECT_FALSE(c->qkv_bias());
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->q_dim(), 2048);  // != hidden 1024
  EXPECT_EQ(c->kv_dim(), 1024);
  EXPECT_EQ(c->rope_theta, 1000000.0);  // an integer in the file
  EXPECT_TRUE(c->tie_word_embeddings);
  // Qwen3Config's head_dim defaults to 128, not hidden / heads.
  json j = json::parse(kQwen3_06B);
  j.erase("head_dim");
  auto d = parse(j);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->head_dim, 128);
  // attention_bias true would bias o_proj too: not built.
  j = json::parse(kQwen3_06B);
  j["attention_bias"] = true;
  expect_error(j, StatusCode::kUnimplemented, "attention_bias");
}

TEST(ModelFamilies, MistralNemoHeadDim) {
  auto c = ModelConfig::from_json_text(kMistralNemo);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, ModelFamily::kMistral);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->q_dim(), 4096);  // != hidden 5120
  EXPECT_EQ(c->kv_dim(), 1024);
  EXPECT_FALSE(c->qkv_bias());
  EXPECT_FALSE(c->qk_norm());
}

TEST(ModelFamilies, SlidingWindowsAreRefused) {
  for (const char* text : {kQwen25_7B, kQwen3_06B}) {
    json j = json::parse(text);
    j["use_sliding_window"] = true;
    expect_error(j, StatusCode::kUnimplemented, "use_sliding_window");
    j = json::parse(text);
    j["layer_types"] = json::array({"full_attention", "sliding_attention"});
    expect_error(j, StatusCode::kUnimplemented, "sliding_attention");
    j = json::parse(text);
    j["layer_types"] = json::array({"full_attention", "full_attention"});
    EXPECT_TRUE(parse(j).ok());
    // sliding_window itself is inert while use_sliding_window is false.
    j = json::parse(text);
    j["sliding_window"] = 4096;
    EXPECT_TRUE(parse(j).ok());
  }
}

TEST(ModelFamilies, UnknownArchitecturesAreRefusedByName) {
  json j = json::parse(kQwen25_7B);
  j["architectures"] = json::array({"Gemma2ForCausalLM"});
  j["model_type"] = "gemma2";
  expect_error(j, StatusCode::kUnimplemented, "architectures [\"Gemma2ForCausalLM\"]");
  j["architectures"] = json::array({"Qwen2MoeForCausalLM"});
  j["model_type"] = "qwen2_moe";
  expect_error(j, StatusCode::kUnimplemented, "Qwen2MoeForCausalLM");
  j["architectures"] = json::array({"Qwen2ForSequenceClassification"});
  j["model_type"] = "qwen2";
  expect_error(j, StatusCode::kUnimplemented, "Qwen2ForSequenceClassification");
  // The two names must agree.
  j = json::parse(kQwen25_7B);
  j["model_type"] = "llama";
  expect_error(j, StatusCode::kInvalidArgument, "model_type");
  j = json::parse(kQwen25_7B);
  j["architectures"] = "Qwen2ForCausalLM";  // not a list
  expect_error(j, StatusCode::kInvalidArgument, "architectures");
  // Without architectures, model_type decides (and names both in refusals).
  j = json::parse(kQwen3_06B);
  j.erase("architectures");
  ASSERT_TRUE(parse(j).ok());
  EXPECT_EQ(parse(j)->family, ModelFamily::kQwen3);
  j["model_type"] = "phi3";
  expect_error(j, StatusCode::kUnimplemented, "architectures");
}

TEST(ModelFamilies, ToJsonWritesEachFamilysLayoutAndRoundTrips) {
  for (const char* text : {kQwen25_7B, kQwen3_06B, kMistralNemo}) {
    auto a = ModelConfig::from_json_text(text);
    ASSERT_TRUE(a.ok()) << a.status();
    const json in = json::parse(text);
    const json out = json::parse(a->to_json_text());
    EXPECT_EQ(out["architectures"], in["architectures"]);
    EXPECT_EQ(out["model_type"], in["model_type"]);
    EXPECT_EQ(out.contains("head_dim"), in.contains("head_dim")) << text;
    if (a->family == ModelFamily::kQwen2 || a->family == ModelFamily::kQwen3) {
      EXPECT_EQ(out["use_sliding_window"], false);
      EXPECT_EQ(out.contains("mlp_bias"), false);
    }
    auto b = ModelConfig::from_json_text(out.dump());
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->family, a->family);
    EXPECT_EQ(b->head_dim, a->head_dim);
    EXPECT_EQ(b->q_dim(), a->q_dim());
    EXPECT_EQ(b->kv_dim(), a->kv_dim());
    EXPECT_EQ(b->rope_theta, a->rope_theta);
    EXPECT_EQ(b->tie_word_embeddings, a->tie_word_embeddings);
    EXPECT_EQ(b->max_position_embeddings, a->max_position_embeddings);
  }
}

}  // namespace
}  // namespace loraserve
