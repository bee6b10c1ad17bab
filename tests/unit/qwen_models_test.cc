// Qwen2 and Qwen3 checkpoints end to end on the host: what `synth` writes
// for them (HF tensor names and shapes, Qwen's tokenizer layout and ChatML
// template), what the loaders accept and refuse (missing or stray family
// tensors, adapters whose shapes belong to another base, named), and the
// cpu engine on a mixed batch of heterogeneous-rank adapters (each request
// gets what it gets alone; every adapter matters; the family's extra
// tensors matter).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoint/lora_adapter.h"
#include "checkpoint/model_weights.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/synth.h"
#include "engine/engine.h"
#include "scheduler/offline.h"
#include "tests/support/test_util.h"
#include "tokenizer/chat_template_source.h"
#include "tokenizer/tokenizer.h"

namespace loraserve {
namespace {

using testing_util::read_file;
using testing_util::TempDir;
using json = nlohmann::json;

// One synthetic checkpoint per family (model + three adapters of ranks 4,
// 16, 40 on all seven modules), written once for the suite.
class QwenModels : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    for (const char* preset : {"qwen2-tiny", "qwen3-tiny", "tiny"}) {
      SynthOptions o;
      o.config = synth_preset(preset).value();
      o.seed = 21;
      o.num_adapters = 3;
      o.ranks = {4, 16, 40};
      o.targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
      ASSERT_TRUE(synth_write(o, dir_->path() + "/" + preset).ok()) << preset;
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string root(const std::string& preset) { return dir_->path() + "/" + preset; }
  static std::string adapter(const std::string& preset, int i) {
    return root(preset) + "/adapters/adapter-00" + std::to_string(i);
  }
  static TempDir* dir_;
};
TempDir* QwenModels::dir_ = nullptr;

INSTANTIATE_TEST_SUITE_P(Families, QwenModels, ::testing::Values("qwen2-tiny", "qwen3-tiny"),
                         [](const auto& info) {
                           return info.param == "qwen2-tiny" ? "Qwen2" : "Qwen3";
                         });

TEST_P(QwenModels, SynthWritesTheFamilysTensorsAndConfig) {
  const std::string preset = GetParam();
  const bool qwen2 = preset == "qwen2-tiny";
  auto w = ModelWeights::open(root(preset) + "/model");
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = (*w)->config();
  EXPECT_EQ(c.family, qwen2 ? ModelFamily::kQwen2 : ModelFamily::kQwen3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.q_dim(), qwen2 ? 256 : 512);  // Qwen3: 8 heads of 64 over hidden 256
  EXPECT_EQ(c.bos_token_id, 1021);
  EXPECT_EQ(c.eos_token_id, 1023);
  for (const LayerTensors& l : (*w)->layers()) {
    if (qwen2) {
      ASSERT_NE(l.q_bias, nullptr);
      EXPECT_EQ(l.q_bias->shape, (std::vector<int64_t>{c.q_dim()}));
      EXPECT_EQ(l.k_bias->shape, (std::vector<int64_t>{c.kv_dim()}));
      EXPECT_EQ(l.v_bias->shape, (std::vector<int64_t>{c.kv_dim()}));
      EXPECT_EQ(l.q_norm, nullptr);
    } else {
      ASSERT_NE(l.q_norm, nullptr);
      EXPECT_NE(l.q_norm->name.find(".self_attn.q_norm.weight"), std::string::npos);
      EXPECT_EQ(l.q_norm->shape, (std::vector<int64_t>{64}));
      EXPECT_EQ(l.k_norm->shape, (std::vector<int64_t>{64}));
      EXPECT_EQ(l.q_bias, nullptr);
    }
    EXPECT_EQ(l.q_proj->shape, (std::vector<int64_t>{c.q_dim(), 256}));
    EXPECT_EQ(l.o_proj->shape, (std::vector<int64_t>{256, c.q_dim()}));
  }
  // qwen2-tiny ties its embeddings as Qwen2.5-0.5B does: no lm_head.weight.
  EXPECT_EQ((*w)->lm_head() == (*w)->embed_tokens(), qwen2);
  const json cfg = json::parse(read_file(root(preset) + "/model/config.json"));
  EXPECT_EQ(cfg["architectures"][0], qwen2 ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM");
  EXPECT_EQ(cfg["use_sliding_window"], false);
  EXPECT_EQ(cfg.contains("head_dim"), !qwen2);
}

TEST_P(QwenModels, TokenizerHasQwensLayoutAndChatMlTemplate) {
  const std::string dir = root(GetParam()) + "/model";
  auto tok = Tokenizer::load_dir(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->token_to_id("<|endoftext|>"), 1021);
  EXPECT_EQ((*tok)->token_to_id("<|im_start|>"), 1022);
  EXPECT_EQ((*tok)->token_to_id("<|im_end|>"), 1023);
  EXPECT_EQ((*tok)->eos_id(), 1023);
  EXPECT_FALSE((*tok)->bos_id().has_value());
  // No BOS is added, and the ChatML markers are single special tokens.
  auto plain = (*tok)->encode("Hello world", /*add_special_tokens=*/true);
  ASSERT_TRUE(plain.ok());
  ASSERT_FALSE(plain->empty());
  EXPECT_LT(plain->front(), 1021);
  auto chat = (*tok)->encode("<|im_start|>user\nThe train was late.<|im_end|>\n", true);
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ(chat->front(), 1022);
  EXPECT_NE(std::find(chat->begin(), chat->end(), 1023), chat->end());
  DecodeOptions o;
  EXPECT_EQ((*tok)->decode(*chat, o), "<|im_start|>user\nThe train was late.<|im_end|>\n");

  auto tmpl = find_chat_template(dir, "");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  EXPECT_NE(tmpl->text.find("<|im_start|>' + message['role'] + '\\n'"), std::string::npos)
      << tmpl->text;
  EXPECT_NE(tmpl->text.find("add_generation_prompt"), std::string::npos);
  EXPECT_EQ(tmpl->eos_token, "<|im_end|>");
  const json tc = json::parse(read_file(dir + "/tokenizer_config.json"));
  EXPECT_EQ(tc["tokenizer_class"], "Qwen2Tokenizer");
  EXPECT_TRUE(tc["bos_token"].is_null());
}

TEST_P(QwenModels, MissingOrStrayFamilyTensorsAreNamed) {
  const std::string preset = GetParam();
  const bool qwen2 = preset == "qwen2-tiny";
  TempDir dir;
  auto src = SafetensorsFile::open(root(preset) + "/model/model.safetensors");
  ASSERT_TRUE(src.ok()) << src.status();
  const std::string dropped =
      qwen2 ? "model.layers.2.self_attn.k_proj.bias" : "model.layers.3.self_attn.k_norm.weight";
  std::vector<TensorToWrite> ts;
  for (const auto& [name, info] : (*src)->tensors()) {
    if (name == dropped) continue;
    ts.push_back({name, info.dtype, info.shape,
                  std::string(static_cast<const char*>(info.data), info.nbytes)});
  }
  ASSERT_TRUE(write_safetensors(dir.path() + "/model.safetensors", ts).ok());
  std::filesystem::copy_file(root(preset) + "/model/config.json", dir.path() + "/config.json");
  auto w = ModelWeights::open(dir.path());
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find(dropped), std::string::npos) << w.status();

  // The same tensors under a Llama config: the family's extras are strays.
  ModelConfig llama = synth_preset(preset).value();
  llama.family = ModelFamily::kLlama;
  llama.model_type = "llama";
  std::filesystem::copy_file(root(preset) + "/model/model.safetensors",
                             dir.path() + "/model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  testing_util::write_file(dir.path() + "/config.json", llama.to_json_text());
  w = ModelWeights::open(dir.path());
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find(qwen2 ? "_proj.bias" : "_norm.weight"), std::string::npos)
      << w.status();
  EXPECT_NE(w.status().message().find("LlamaForCausalLM"), std::string::npos) << w.status();
}

// An adapter trained on another base is refused by tensor name: Qwen3's
// q_proj/o_proj are 512 wide (8 heads of 64), the Llama tiny's 256.
TEST_P(QwenModels, AdaptersForAnotherBaseAreRefusedByName) {
  const std::string preset = GetParam();
  auto own = ModelWeights::open(root(preset) + "/model");
  auto llama = ModelWeights::open(root("tiny") + "/model");
  ASSERT_TRUE(own.ok() && llama.ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(LoraAdapter::load_dir(adapter(preset, i), (*own)->config()).ok());
  }
  if (preset == "qwen3-tiny") {
    auto a = LoraAdapter::load_dir(adapter(preset, 0), (*llama)->config());
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), StatusCode::kFailedPrecondition) << a.status();
    EXPECT_NE(a.status().message().find("proj.lora_"), std::string::npos) << a.status();
    auto b = LoraAdapter::load_dir(adapter("tiny", 1), (*own)->config());
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.status().code(), StatusCode::kFailedPrecondition) << b.status();
  } else {
    // Qwen2-tiny has the Llama tiny's shapes: its adapters fit each other,
    // as PEFT would let them (the bias is the base layer's, not the adapter's).
    EXPECT_TRUE(LoraAdapter::load_dir(adapter(preset, 0), (*llama)->config()).ok());
  }
}

std::vector<GenerationRequest> mixed(const std::vector<std::string>& ids) {
  std::vector<GenerationRequest> reqs;
  auto add = [&](const std::string& id, std::vector<int32_t> prompt, int n, int join, int chunk) {
    GenerationRequest r;
    r.adapter_id = id;
    r.prompt = std::move(prompt);
    r.max_new_tokens = n;
    r.join_step = join;
    r.prefill_chunk = chunk;
    r.want_logits = true;
    reqs.push_back(std::move(r));
  };
  add("", {17, 300, 42, 9, 500}, 8, 0, 0);
  add(ids[0], {17, 300, 42, 9, 500}, 7, 0, 0);
  add(ids[1], {5, 6, 7, 8, 9, 10, 11, 12, 13}, 6, 1, 4);
  add(ids[2], {900, 3, 77, 78}, 9, 2, 0);
  add(ids[1], {100, 200}, 5, 0, 0);
  return reqs;
}

TEST_P(QwenModels, CpuEngineMixedBatchMatchesEachRequestAlone) {
  const std::string preset = GetParam();
  auto w = ModelWeights::open(root(preset) + "/model");
  ASSERT_TRUE(w.ok()) << w.status();
  auto make = [&]() {
    auto e = Engine::create(**w, create_cpu_backend(), EngineOptions{});
    EXPECT_TRUE(e.ok()) << e.status();
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) {
      auto a = LoraAdapter::load_dir(adapter(preset, i), (*w)->config());
      EXPECT_TRUE(a.ok()) << a.status();
      ids.push_back("a" + std::to_string(i));
      EXPECT_TRUE((*e)->register_adapter(ids.back(), **a).ok());
    }
    return std::make_pair(std::move(*e), ids);
  };
  auto [together, ids] = make();
  const auto reqs = mixed(ids);
  std::vector<GenerationResult> batched;
  ASSERT_TRUE(generate(*together, reqs, &batched).ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto [alone_engine, same_ids] = make();
    GenerationRequest r = reqs[i];
    r.join_step = 0;
    r.prefill_chunk = 0;
    std::vector<GenerationResult> alone;
    ASSERT_TRUE(generate(*alone_engine, {r}, &alone).ok());
    ASSERT_EQ(batched[i].tokens, alone[0].tokens) << "request " << i;
    for (size_t t = 0; t < alone[0].logits.size(); ++t) {
      for (size_t v = 0; v < alone[0].logits[t].size(); ++v) {
        ASSERT_NEAR(batched[i].logits[t][v], alone[0].logits[t][v], 1e-3)
            << "request " << i << " step " << t << " token " << v;
      }
    }
  }
  // Every adapter moves the logits of its own requests (same prompt as base).
  double d = 0;
  for (size_t v = 0; v < batched[0].logits[0].size(); ++v) {
    d = std::max(d, std::fabs(double(batched[1].logits[0][v]) - batched[0].logits[0][v]));
  }
  EXPECT_GT(d, 0.05);
}

// The family's extra tensors take part in the forward: the same weights
// read as a plain Llama (the extras dropped) give clearly different logits.
TEST_P(QwenModels, FamilyTensorsChangeTheOutput) {
  const std::string preset = GetParam();
  auto w = ModelWeights::open(root(preset) + "/model");
  ASSERT_TRUE(w.ok()) << w.status();
  TempDir dir;
  auto src = SafetensorsFile::open(root(preset) + "/model/model.safetensors");
  ASSERT_TRUE(src.ok());
  std::vector<TensorToWrite> ts;
  for (const auto& [name, info] : (*src)->tensors()) {
    // q/k/v_proj.bias and q_norm/k_norm.weight ("layernorm" has no '_' before "norm").
    if (name.find(".bias") != std::string::npos || name.find("_norm.weight") != std::string::npos) {
      continue;
    }
    ts.push_back({name, info.dtype, info.shape,
                  std::string(static_cast<const char*>(info.data), info.nbytes)});
  }
  ASSERT_TRUE(write_safetensors(dir.path() + "/model.safetensors", ts).ok());
  ModelConfig llama = (*w)->config();
  llama.family = ModelFamily::kLlama;
  llama.model_type = "llama";
  testing_util::write_file(dir.path() + "/config.json", llama.to_json_text());
  auto plain = ModelWeights::open(dir.path());
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto run = [](const ModelWeights& mw) {
    auto e = Engine::create(mw, create_cpu_backend(), EngineOptions{});
    EXPECT_TRUE(e.ok()) << e.status();
    GenerationRequest r;
    r.prompt = {17, 300, 42, 9, 500, 61};
    r.max_new_tokens = 1;
    r.want_logits = true;
    std::vector<GenerationResult> out;
    EXPECT_TRUE(generate(**e, {r}, &out).ok());
    return out[0].logits[0];
  };
  const auto a = run(**w), b = run(**plain);
  double d = 0;
  for (size_t v = 0; v < a.size(); ++v) d = std::max(d, std::fabs(double(a[v]) - b[v]));
  EXPECT_GT(d, 0.1);
}

TEST(QwenPresets, FullSizeShapes) {
  auto q25 = synth_preset("qwen2.5-7b");
  ASSERT_TRUE(q25.ok());
  EXPECT_EQ(q25->family, ModelFamily::kQwen2);
  EXPECT_EQ(q25->hidden_size, 3584);
  EXPECT_EQ(q25->num_key_value_heads, 4);
  EXPECT_EQ(q25->head_dim, 128);
  EXPECT_EQ(q25->vocab_size, 152064);
  auto q3 = synth_preset("qwen3-8b");
  ASSERT_TRUE(q3.ok());
  EXPECT_EQ(q3->family, ModelFamily::kQwen3);
  EXPECT_EQ(q3->num_hidden_layers, 36);
  EXPECT_EQ(q3->q_dim(), 4096);
  EXPECT_EQ(q3->intermediate_size, 12288);
  auto nemo = synth_preset("mistral-nemo-12b");
  ASSERT_TRUE(nemo.ok());
  EXPECT_EQ(nemo->hidden_size, 5120);
  EXPECT_EQ(nemo->q_dim(), 4096);
  for (const char* name :
       {"qwen2-tiny", "qwen3-tiny", "qwen2.5-7b", "qwen3-8b", "mistral-nemo-12b"}) {
    auto c = synth_preset(name);
    ASSERT_TRUE(c.ok()) << name;
    auto back = ModelConfig::from_json_text(c->to_json_text());
    ASSERT_TRUE(back.ok()) << name << ": " << back.status();
    EXPECT_EQ(back->family, c->family) << name;
    EXPECT_EQ(back->q_dim(), c->q_dim()) << name;
    EXPECT_EQ(back->kv_dim(), c->kv_dim()) << name;
  }
  EXPECT_NE(synth_preset("qwen4").status().message().find("qwen3-tiny"), std::string::npos);
}

}  // namespace
}  // namespace loraserve
