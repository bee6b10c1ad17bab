#include "tests/support/test_util.h"
#include "checkpoint/synth.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/lora_adapter.h"
#include "checkpoint/model_weights.h"

namespace loraserve {
namespace {

using testing_util::TempDir;
using testing_util::read_file;
using testing_util::write_file;

namespace fs = std::filesystem;

SynthOptions tiny_options(uint64_t seed, int adapters) {
  SynthOptions o;
  o.config = synth_preset("tiny").value();
  o.seed = seed;
  o.num_adapters = adapters;
  return o;
}

std::vector<float> to_f32(const TensorInfo* t) {
  std::vector<float> v(static_cast<size_t>(t->numel()));
  convert_to_f32(t->dtype, t->data, v.data(), v.size());
  return v;
}

void mean_std(const std::vector<float>& v, double* mean, double* std_dev) {
  double s = 0, s2 = 0;
  for (float x : v) {
    s += x;
    s2 += static_cast<double>(x) * x;
  }
  *mean = s / v.size();
  *std_dev = std::sqrt(s2 / v.size() - *mean * *mean);
}

TEST(Synth, Presets) {
  auto tiny = synth_preset("tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny->hidden_size, 256);
  EXPECT_EQ(tiny->num_hidden_layers, 4);
  EXPECT_EQ(tiny->num_attention_heads, 4);
  EXPECT_EQ(tiny->num_key_value_heads, 2);
  EXPECT_EQ(tiny->head_dim, 64);
  EXPECT_EQ(tiny->intermediate_size, 512);
  EXPECT_EQ(tiny->vocab_size, 1024);
  EXPECT_EQ(tiny->max_position_embeddings, 2048);
  EXPECT_EQ(tiny->rms_norm_eps, 1e-5);
  EXPECT_EQ(tiny->rope_theta, 10000.0);
  EXPECT_FALSE(tiny->tie_word_embeddings);
  EXPECT_EQ(tiny->bos_token_id, 1);
  EXPECT_EQ(tiny->eos_token_id, 2);

  auto l2 = synth_preset("llama2-7b");
  ASSERT_TRUE(l2.ok());
  EXPECT_EQ(l2->hidden_size, 4096);
  EXPECT_EQ(l2->num_key_value_heads, 32);
  EXPECT_EQ(l2->intermediate_size, 11008);
  EXPECT_EQ(l2->vocab_size, 32000);
  EXPECT_EQ(l2->max_position_embeddings, 4096);
  EXPECT_FALSE(l2->rope_scaling.has_value());

  auto l3 = synth_preset("llama3-8b");
  ASSERT_TRUE(l3.ok());
  EXPECT_EQ(l3->num_key_value_heads, 8);
  EXPECT_EQ(l3->intermediate_size, 14336);
  EXPECT_EQ(l3->vocab_size, 128256);
  EXPECT_EQ(l3->rope_theta, 500000.0);
  EXPECT_EQ(l3->max_position_embeddings, 131072);
  ASSERT_TRUE(l3->rope_scaling.has_value());
  EXPECT_EQ(l3->rope_scaling->factor, 8.0f);
  EXPECT_EQ(l3->rope_scaling->low_freq_factor, 1.0f);
  EXPECT_EQ(l3->rope_scaling->high_freq_factor, 4.0f);
  EXPECT_EQ(l3->rope_scaling->original_max_position_embeddings, 8192);

  // Every preset is a config the parser accepts unchanged.
  for (const char* name : {"tiny", "llama2-7b", "llama3-8b"}) {
    auto c = synth_preset(name);
    auto back = ModelConfig::from_json_text(c->to_json_text());
    ASSERT_TRUE(back.ok()) << name << ": " << back.status();
    EXPECT_EQ(back->kv_dim(), c->kv_dim());
  }
  auto bad = synth_preset("llama4-400b");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("llama4-400b"), std::string::npos);
}

TEST(Synth, SameSeedSameBytesDifferentSeedDifferentBytes) {
  TempDir a, b, c;
  ASSERT_TRUE(synth_write(tiny_options(7, 2), a.path()).ok());
  ASSERT_TRUE(synth_write(tiny_options(7, 2), b.path()).ok());
  ASSERT_TRUE(synth_write(tiny_options(8, 2), c.path()).ok());
  for (const char* rel :
       {"model/config.json", "model/model.safetensors", "adapters/adapter-000/adapter_config.json",
        "adapters/adapter-000/adapter_model.safetensors",
        "adapters/adapter-001/adapter_config.json",
        "adapters/adapter-001/adapter_model.safetensors"}) {
    const std::string fa = read_file(a.path() + "/" + rel);
    ASSERT_FALSE(fa.empty()) << rel;
    EXPECT_EQ(fa, read_file(b.path() + "/" + rel)) << rel;
  }
  EXPECT_NE(read_file(a.path() + "/model/model.safetensors"),
            read_file(c.path() + "/model/model.safetensors"));
  EXPECT_NE(read_file(a.path() + "/adapters/adapter-000/adapter_model.safetensors"),
            read_file(c.path() + "/adapters/adapter-000/adapter_model.safetensors"));
  // Two adapters of one run differ too (rank 8 vs 16 here, but also values).
  EXPECT_NE(read_file(a.path() + "/adapters/adapter-000/adapter_model.safetensors"),
            read_file(a.path() + "/adapters/adapter-001/adapter_model.safetensors"));
}

TEST(Synth, GeneratorIsPinned) {
  // The first values of a tensor depend only on (seed, name): pinned so a
  // change to the generator (or a platform difference) is noticed.
  TempDir dir;
  SynthOptions o = tiny_options(0, 0);
  ASSERT_TRUE(synth_write(o, dir.path()).ok());
  auto w = ModelWeights::open(dir.path() + "/model");
  ASSERT_TRUE(w.ok()) << w.status();
  const uint16_t* e = static_cast<const uint16_t*>((*w)->embed_tokens()->data);
  const std::vector<uint16_t> got(e, e + 4);
  // bf16 bits of -2.64, -0.84, -0.35, -0.69.
  const std::vector<uint16_t> want = {0xc029, 0xbf56, 0xbeb1, 0xbf30};
  EXPECT_EQ(got, want);
}

TEST(Synth, ModelLoadsWithExpectedStatistics) {
  TempDir dir;
  ASSERT_TRUE(synth_write(tiny_options(1, 0), dir.path()).ok());
  EXPECT_FALSE(fs::exists(dir.path() + "/adapters/adapter-000"));
  auto w = ModelWeights::open(dir.path() + "/model");
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = (*w)->config();
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ((*w)->embed_tokens()->dtype, DType::kBF16);
  EXPECT_NE((*w)->lm_head(), (*w)->embed_tokens());

  double mean = 0, sd = 0;
  mean_std(to_f32((*w)->embed_tokens()), &mean, &sd);
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(sd, 1.0, 0.02);
  mean_std(to_f32((*w)->layers()[2].q_proj), &mean, &sd);
  EXPECT_NEAR(mean, 0.0, 0.005);
  EXPECT_NEAR(sd, 1.0 / 16, 0.002);  // 1/sqrt(256)
  mean_std(to_f32((*w)->layers()[3].down_proj), &mean, &sd);
  EXPECT_NEAR(sd, 1.0 / std::sqrt(512.0), 0.002);
  mean_std(to_f32((*w)->layers()[0].input_layernorm), &mean, &sd);
  EXPECT_NEAR(mean, 1.0, 0.03);
  EXPECT_NEAR(sd, 0.1, 0.03);
  mean_std(to_f32((*w)->lm_head()), &mean, &sd);
  EXPECT_NEAR(sd, 1.0 / 16, 0.002);
  // Different tensors are not copies of one another.
  EXPECT_NE(to_f32((*w)->layers()[0].q_proj), to_f32((*w)->layers()[1].q_proj));

  // Plain safetensors that any reader can parse: header JSON right after the length.
  const std::string bytes = read_file(dir.path() + "/model/model.safetensors");
  EXPECT_EQ(bytes[8], '{');
  auto config = nlohmann::json::parse(read_file(dir.path() + "/model/config.json"));
  EXPECT_EQ(config["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(config["num_key_value_heads"], 2);
}

TEST(Synth, AdaptersLoadWithPeftConfig) {
  TempDir dir;
  SynthOptions o = tiny_options(3, 5);
  o.targets = {"q_proj", "v_proj", "down_proj"};
  ASSERT_TRUE(synth_write(o, dir.path()).ok());
  auto w = ModelWeights::open(dir.path() + "/model");
  ASSERT_TRUE(w.ok()) << w.status();
  const int ranks[] = {8, 16, 32, 64, 8};
  for (int i = 0; i < 5; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "/adapters/adapter-%03d", i);
    const std::string adir = dir.path() + name;
    auto cfg = nlohmann::json::parse(read_file(adir + "/adapter_config.json"));
    EXPECT_EQ(cfg["peft_type"], "LORA");
    EXPECT_EQ(cfg["r"], ranks[i]);
    EXPECT_EQ(cfg["lora_alpha"], 2 * ranks[i]);
    EXPECT_EQ(cfg["bias"], "none");
    EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
    EXPECT_EQ(cfg["target_modules"], nlohmann::json({"q_proj", "v_proj", "down_proj"}));

    auto a = LoraAdapter::load_dir(adir, (*w)->config());
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ((*a)->max_rank(), ranks[i]);
    EXPECT_EQ((*a)->module_mask(), (1u << static_cast<int>(LoraModule::kQ)) |
                                       (1u << static_cast<int>(LoraModule::kV)) |
                                       (1u << static_cast<int>(LoraModule::kDown)));
    for (int l = 0; l < 4; ++l) {
      const LoraWeights& q = (*a)->weights(l, LoraModule::kQ);
      EXPECT_EQ(q.rank, ranks[i]);
      EXPECT_FLOAT_EQ(q.scale, 2.0f);
      EXPECT_EQ((*a)->weights(l, LoraModule::kK).rank, 0);
      double mean = 0, sd = 0;
      mean_std(q.bt, &mean, &sd);
      EXPECT_GT(sd, 0.0);  // B is not PEFT's zero init
      EXPECT_NEAR(sd, 0.25 / std::sqrt(static_cast<double>(ranks[i])), 0.3 * 0.25 / std::sqrt(8.0));
      mean_std(q.a, &mean, &sd);
      EXPECT_NEAR(sd, 1.0 / 16, 0.01);
    }
  }
}

TEST(Synth, AdaptersOnlyAndBadOptions) {
  TempDir dir;
  SynthOptions o = tiny_options(1, 1);
  o.write_model = false;
  ASSERT_TRUE(synth_write(o, dir.path()).ok());
  EXPECT_FALSE(fs::exists(dir.path() + "/model"));
  EXPECT_TRUE(fs::exists(dir.path() + "/adapters/adapter-000/adapter_model.safetensors"));

  o = tiny_options(1, 1);
  o.targets = {"q_proj", "lm_head"};
  Status s = synth_write(o, dir.path());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("lm_head"), std::string::npos) << s;

  o = tiny_options(1, 1);
  o.ranks = {0};
  EXPECT_EQ(synth_write(o, dir.path()).code(), StatusCode::kInvalidArgument);

  o = tiny_options(1, 0);
  o.config.num_key_value_heads = 3;  // 4 heads are not a multiple of 3
  EXPECT_EQ(synth_write(o, dir.path()).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve
