#include "tests/support/test_util.h"
#include "checkpoint/lora_adapter.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/safetensors.h"
#include "tests/support/tiny_model_config.h"

namespace loraserve {
namespace {

using testing_util::TempDir;
using testing_util::read_file;
using testing_util::write_file;

using json = nlohmann::ordered_json;

ModelConfig base_config() { return tiny_llama_config(); }

json peft_config(int r, double alpha, json targets) {
  // As PEFT 0.13 writes it.
  return json{{"alpha_pattern", json::object()},
              {"auto_mapping", nullptr},
              {"base_model_name_or_path", "meta-llama/Llama-2-7b-hf"},
              {"bias", "none"},
              {"fan_in_fan_out", false},
              {"inference_mode", true},
              {"init_lora_weights", true},
              {"layer_replication", nullptr},
              {"layers_pattern", nullptr},
              {"layers_to_transform", nullptr},
              {"loftq_config", json::object()},
              {"lora_alpha", alpha},
              {"lora_dropout", 0.05},
              {"megatron_config", nullptr},
              {"megatron_core", "megatron.core"},
              {"modules_to_save", nullptr},
              {"peft_type", "LORA"},
              {"r", r},
              {"rank_pattern", json::object()},
              {"revision", nullptr},
              {"target_modules", targets},
              {"task_type", "CAUSAL_LM"},
              {"use_dora", false},
              {"use_rslora", false}};
}

std::string module_prefix(int layer, const std::string& module) {
  const bool attn =
      module == "q_proj" || module == "k_proj" || module == "v_proj" || module == "o_proj";
  return "base_model.model.model.layers." + std::to_string(layer) + "." +
         (attn ? "self_attn." : "mlp.") + module;
}

// f32 tensor whose element i is (i + seed) / 64, exact in f32 and bf16.
TensorToWrite f32_tensor(const std::string& name, std::vector<int64_t> shape, int seed,
                         DType dtype = DType::kF32) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>((i + seed) % 97) / 64.0f;
  std::string bytes(static_cast<size_t>(n) * dtype_size(dtype), '\0');
  convert_from_f32(dtype, v.data(), bytes.data(), v.size());
  return {name, dtype, std::move(shape), std::move(bytes)};
}

// A and B for (layer, module) at `rank` with the base dims.
void add_pair(std::vector<TensorToWrite>* ts, int layer, const std::string& module, int rank,
              int64_t in, int64_t out, DType dtype = DType::kF32) {
  const std::string p = module_prefix(layer, module);
  ts->push_back(f32_tensor(p + ".lora_A.weight", {rank, in}, layer * 10 + 1, dtype));
  ts->push_back(f32_tensor(p + ".lora_B.weight", {out, rank}, layer * 10 + 2, dtype));
}

void write_adapter(const std::string& dir, const json& cfg, const std::vector<TensorToWrite>& ts) {
  std::ofstream(dir + "/adapter_config.json") << cfg.dump(2);
  ASSERT_TRUE(write_safetensors(dir + "/adapter_model.safetensors", ts).ok());
}

StatusOr<std::unique_ptr<LoraAdapter>> load(const json& cfg, const std::vector<TensorToWrite>& ts,
                                            const ModelConfig& base = base_config()) {
  TempDir dir;
  write_adapter(dir.path(), cfg, ts);
  return LoraAdapter::load_dir(dir.path(), base);
}

void expect_error(const json& cfg, const std::vector<TensorToWrite>& ts, StatusCode code,
                  const std::vector<std::string>& needles) {
  auto a = load(cfg, ts);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), code) << a.status();
  for (const auto& n : needles) {
    EXPECT_NE(a.status().message().find(n), std::string::npos)
        << "'" << n << "' not in: " << a.status();
  }
}

// q_proj and v_proj in both layers at rank 4: the common PEFT setup.
std::vector<TensorToWrite> qv_tensors(int rank = 4) {
  std::vector<TensorToWrite> ts;
  for (int l = 0; l < 2; ++l) {
    add_pair(&ts, l, "q_proj", rank, 16, 16);
    add_pair(&ts, l, "v_proj", rank, 16, 8);
  }
  return ts;
}

TEST(LoraModule, NamesAndDims) {
  const ModelConfig c = base_config();
  EXPECT_STREQ(lora_module_name(LoraModule::kQ), "q_proj");
  EXPECT_STREQ(lora_module_name(LoraModule::kDown), "down_proj");
  const int64_t in[] = {16, 16, 16, 16, 16, 16, 24};
  const int64_t out[] = {16, 8, 8, 16, 24, 24, 16};
  for (int m = 0; m < kNumLoraModules; ++m) {
    EXPECT_EQ(lora_module_in_dim(c, static_cast<LoraModule>(m)), in[m]) << m;
    EXPECT_EQ(lora_module_out_dim(c, static_cast<LoraModule>(m)), out[m]) << m;
  }
}

TEST(LoraAdapter, LoadsAndTransposesB) {
  const auto ts = qv_tensors();
  auto a = load(peft_config(4, 8, {"q_proj", "v_proj"}), ts);
  ASSERT_TRUE(a.ok()) << a.status();
  const LoraAdapter& ad = **a;
  EXPECT_EQ(ad.num_layers(), 2);
  EXPECT_EQ(ad.max_rank(), 4);
  EXPECT_EQ(ad.module_mask(),
            (1u << static_cast<int>(LoraModule::kQ)) | (1u << static_cast<int>(LoraModule::kV)));
  // (4*16 + 4*16) + (4*16 + 4*8) floats per layer.
  EXPECT_EQ(ad.weight_bytes(), 2u * (128 + 96) * sizeof(float));
  EXPECT_EQ(ad.weights(0, LoraModule::kK).rank, 0);
  EXPECT_TRUE(ad.weights(0, LoraModule::kK).a.empty());

  const LoraWeights& v1 = ad.weights(1, LoraModule::kV);
  EXPECT_EQ(v1.rank, 4);
  EXPECT_FLOAT_EQ(v1.scale, 2.0f);
  ASSERT_EQ(v1.a.size(), 4u * 16);
  ASSERT_EQ(v1.bt.size(), 4u * 8);
  // A copied as is: element (k, i) = ((k*16 + i) + 11) % 97 / 64.
  for (int k = 0; k < 4; ++k) {
    for (int i = 0; i < 16; ++i) {
      EXPECT_EQ(v1.a[k * 16 + i], static_cast<float>((k * 16 + i + 11) % 97) / 64.0f);
    }
  }
  // Bt[k, o] = B[o, k] = ((o*4 + k) + 12) % 97 / 64.
  for (int k = 0; k < 4; ++k) {
    for (int o = 0; o < 8; ++o) {
      EXPECT_EQ(v1.bt[k * 8 + o], static_cast<float>((o * 4 + k + 12) % 97) / 64.0f);
    }
  }
}

TEST(LoraAdapter, LoadBytesMatchesLoadDir) {
  TempDir dir;
  const json cfg = peft_config(4, 16, {"q_proj", "v_proj"});
  std::vector<TensorToWrite> ts;
  for (int l = 0; l < 2; ++l) {
    add_pair(&ts, l, "q_proj", 4, 16, 16, DType::kBF16);
    add_pair(&ts, l, "v_proj", 4, 16, 8, DType::kBF16);
  }
  write_adapter(dir.path(), cfg, ts);
  std::ifstream in(dir.path() + "/adapter_model.safetensors", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  auto a = LoraAdapter::load_dir(dir.path(), base_config());
  auto b = LoraAdapter::load_bytes(cfg.dump(), ss.str(), base_config(), "upload");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  for (int l = 0; l < 2; ++l) {
    for (int m = 0; m < kNumLoraModules; ++m) {
      const auto& wa = (*a)->weights(l, static_cast<LoraModule>(m));
      const auto& wb = (*b)->weights(l, static_cast<LoraModule>(m));
      EXPECT_EQ(wa.rank, wb.rank);
      EXPECT_EQ(wa.scale, wb.scale);
      EXPECT_EQ(wa.a, wb.a);
      EXPECT_EQ(wa.bt, wb.bt);
    }
  }
  EXPECT_FLOAT_EQ((*b)->weights(0, LoraModule::kQ).scale, 4.0f);

  auto bad = LoraAdapter::load_bytes(cfg.dump(), "xx", base_config(), "upload-7");
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("upload-7"), std::string::npos) << bad.status();
}

TEST(LoraAdapter, RankMismatchWithConfig) {
  // Config says r=8, tensors are rank 4.
  expect_error(peft_config(8, 16, {"q_proj", "v_proj"}), qv_tensors(4),
               StatusCode::kInvalidArgument,
               {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "[4, 16]",
                "rank 8", "[8, 16]"});
}

TEST(LoraAdapter, InDimMismatchWithBase) {
  std::vector<TensorToWrite> ts;
  add_pair(&ts, 0, "q_proj", 4, 20, 16);  // trained on a base with hidden 20
  expect_error(
      peft_config(4, 8, {"q_proj"}), ts, StatusCode::kFailedPrecondition,
      {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "[4, 20]", "[4, 16]"});
}

TEST(LoraAdapter, OutDimMismatchWithBase) {
  std::vector<TensorToWrite> ts;
  add_pair(&ts, 1, "k_proj", 4, 16, 16);  // k_proj of a non-GQA base: out 16, ours is 8
  expect_error(
      peft_config(4, 8, {"k_proj"}), ts, StatusCode::kFailedPrecondition,
      {"base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight", "[16, 4]", "[8, 4]"});
  ts.clear();
  add_pair(&ts, 0, "down_proj", 4, 32, 16);  // inter 32 vs 24
  expect_error(peft_config(4, 8, {"down_proj"}), ts, StatusCode::kFailedPrecondition,
               {"mlp.down_proj.lora_A.weight", "[4, 32]", "[4, 24]"});
}

TEST(LoraAdapter, LayerBeyondBase) {
  std::vector<TensorToWrite> ts;
  add_pair(&ts, 5, "q_proj", 4, 16, 16);
  expect_error(peft_config(4, 8, {"q_proj"}), ts, StatusCode::kFailedPrecondition,
               {"layers.5.self_attn.q_proj", "2 layers"});
}

TEST(LoraAdapter, RefusesUnsupportedFeatures) {
  const auto ts = qv_tensors();
  json cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["use_dora"] = true;
  expect_error(cfg, ts, StatusCode::kUnimplemented, {"use_dora", "DoRA"});

  cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["modules_to_save"] = {"lm_head"};
  expect_error(cfg, ts, StatusCode::kUnimplemented, {"modules_to_save", "lm_head"});

  cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["bias"] = "lora_only";
  expect_error(cfg, ts, StatusCode::kUnimplemented, {"bias", "lora_only"});

  cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["layers_to_transform"] = {0};
  expect_error(cfg, ts, StatusCode::kUnimplemented, {"layers_to_transform"});

  cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["layers_pattern"] = "layers";
  expect_error(cfg, ts, StatusCode::kUnimplemented, {"layers_pattern"});

  cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["peft_type"] = "IA3";
  expect_error(cfg, ts, StatusCode::kUnimplemented, {"peft_type", "IA3"});

  cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["modules_to_save"] = json::array();  // empty list is harmless
  cfg["fan_in_fan_out"] = true;            // ignored for nn.Linear, as PEFT does
  auto a = load(cfg, ts);
  ASSERT_TRUE(a.ok()) << a.status();
  auto plain = load(peft_config(4, 8, {"q_proj", "v_proj"}), ts);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*a)->weights(0, LoraModule::kQ).bt, (*plain)->weights(0, LoraModule::kQ).bt);
}

TEST(LoraAdapter, RankAndAlphaPatterns) {
  // r 4 / alpha 8 by default; layer 1's q_proj has rank 2 (key with a layer
  // path), every v_proj alpha 3 (bare module name).
  json cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["rank_pattern"] = {{"layers.1.self_attn.q_proj", 2}};
  cfg["alpha_pattern"] = {{"v_proj", 3.0}};
  std::vector<TensorToWrite> ts;
  add_pair(&ts, 0, "q_proj", 4, 16, 16);
  add_pair(&ts, 1, "q_proj", 2, 16, 16);
  add_pair(&ts, 0, "v_proj", 4, 16, 8);
  add_pair(&ts, 1, "v_proj", 4, 16, 8);
  auto a = load(cfg, ts);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->weights(0, LoraModule::kQ).rank, 4);
  EXPECT_FLOAT_EQ((*a)->weights(0, LoraModule::kQ).scale, 8.0f / 4);
  EXPECT_EQ((*a)->weights(1, LoraModule::kQ).rank, 2);
  EXPECT_FLOAT_EQ((*a)->weights(1, LoraModule::kQ).scale, 8.0f / 2);
  EXPECT_EQ((*a)->weights(1, LoraModule::kQ).a.size(), 2u * 16);
  EXPECT_FLOAT_EQ((*a)->weights(0, LoraModule::kV).scale, 3.0f / 4);
  EXPECT_FLOAT_EQ((*a)->weights(1, LoraModule::kV).scale, 3.0f / 4);
  EXPECT_EQ((*a)->max_rank(), 4);

  // A pattern key must match at a dot boundary: "proj" does not match q_proj.
  cfg["rank_pattern"] = {{"proj", 2}};
  ts.clear();
  add_pair(&ts, 0, "q_proj", 4, 16, 16);
  a = load(cfg, ts);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->weights(0, LoraModule::kQ).rank, 4);

  // With rank_pattern giving 16, rank-4 tensors are a mismatch.
  cfg["rank_pattern"] = {{"q_proj", 16}};
  expect_error(cfg, ts, StatusCode::kInvalidArgument, {"lora_A.weight", "rank 16"});
}

TEST(LoraAdapter, RsLoraScale) {
  json cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["use_rslora"] = true;
  cfg["rank_pattern"] = {{"model.layers.1.self_attn.v_proj", 16}};
  std::vector<TensorToWrite> ts;
  add_pair(&ts, 0, "q_proj", 4, 16, 16);
  add_pair(&ts, 1, "v_proj", 16, 16, 8);
  auto a = load(cfg, ts);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FLOAT_EQ((*a)->weights(0, LoraModule::kQ).scale, 8.0f / 2.0f);  // 8 / sqrt(4)
  EXPECT_FLOAT_EQ((*a)->weights(1, LoraModule::kV).scale, 8.0f / 4.0f);  // 8 / sqrt(16)
  EXPECT_EQ((*a)->max_rank(), 16);
}

TEST(LoraAdapter, RegexTargetModules) {
  // String form: full match against the module path.
  json cfg = peft_config(4, 8, R"(.*\.(q|v)_proj)");
  auto a = load(cfg, qv_tensors());
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<TensorToWrite> ts = qv_tensors();
  add_pair(&ts, 0, "k_proj", 4, 16, 8);
  expect_error(cfg, ts, StatusCode::kInvalidArgument,
               {"model.layers.0.self_attn.k_proj", "target_modules"});

  // A regex restricted to layer 0 refuses layer 1's tensors.
  cfg = peft_config(4, 8, R"(model\.layers\.0\.self_attn\.(q|v)_proj)");
  expect_error(cfg, qv_tensors(), StatusCode::kInvalidArgument,
               {"model.layers.1.self_attn.q_proj"});
  // Partial matches do not count (fullmatch).
  cfg = peft_config(4, 8, "q_proj");
  ts.clear();
  add_pair(&ts, 0, "q_proj", 4, 16, 16);
  expect_error(cfg, ts, StatusCode::kInvalidArgument, {"target_modules"});
  cfg = peft_config(4, 8, "(unclosed");
  expect_error(cfg, ts, StatusCode::kInvalidArgument, {"not a valid regular expression"});
}

// Found by tests/fuzz/lora_adapter_fuzz: the regexes of an uploaded
// adapter_config.json ran on std::regex, which has no limits. Nested groups
// overflowed the stack (the server crashed), nested stars backtracked for
// hours on a module path, and a huge repeat count took seconds and GBs.
// Each is now refused at once with a message naming the field.
TEST(LoraAdapter, HostileRegexesAreRefusedQuicklyNamingTheField) {
  const auto start = std::chrono::steady_clock::now();
  const std::string nested = std::string(20000, '(') + "q_proj" + std::string(20000, ')');
  expect_error(peft_config(4, 8, nested), qv_tensors(), StatusCode::kInvalidArgument,
               {"target_modules", "bytes"});
  const std::string deep = std::string(300, '(') + ".*q_proj" + std::string(300, ')');
  expect_error(peft_config(4, 8, deep), qv_tensors(), StatusCode::kInvalidArgument,
               {"target_modules", "not a valid regular expression"});
  expect_error(peft_config(4, 8, ".*q_proj{99999999}"), qv_tensors(),
               StatusCode::kInvalidArgument, {"target_modules", "not a valid regular expression"});
  expect_error(peft_config(4, 8, "(((.*)*)*)*v_proj"), qv_tensors(),
               StatusCode::kInvalidArgument, {"target_modules", "steps"});
  json cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["rank_pattern"] = {{"(((.*)*)*)*z_proj", 4}};
  expect_error(cfg, qv_tensors(), StatusCode::kInvalidArgument, {"rank_pattern", "steps"});
  cfg["rank_pattern"] = json::object();
  cfg["alpha_pattern"] = {{"(unclosed", 4}};
  expect_error(cfg, qv_tensors(), StatusCode::kInvalidArgument,
               {"alpha_pattern", "not a valid regular expression"});
  // Patterns as PEFT writes them still work: a key matching at a dot.
  cfg["alpha_pattern"] = {{"v_proj", 16}};
  EXPECT_TRUE(load(cfg, qv_tensors()).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST(LoraAdapter, ListTargetModulesMatchSuffixAtDot) {
  std::vector<TensorToWrite> ts;
  add_pair(&ts, 0, "q_proj", 4, 16, 16);
  EXPECT_TRUE(load(peft_config(4, 8, {"self_attn.q_proj"}), ts).ok());
  EXPECT_TRUE(load(peft_config(4, 8, {"model.layers.0.self_attn.q_proj"}), ts).ok());
  expect_error(peft_config(4, 8, {"proj"}), ts, StatusCode::kInvalidArgument, {"target_modules"});
  expect_error(peft_config(4, 8, {"v_proj"}), ts, StatusCode::kInvalidArgument,
               {"model.layers.0.self_attn.q_proj"});
}

TEST(LoraAdapter, UnpairedTensors) {
  std::vector<TensorToWrite> ts;
  add_pair(&ts, 0, "q_proj", 4, 16, 16);
  ts.pop_back();  // drop B
  expect_error(peft_config(4, 8, {"q_proj"}), ts, StatusCode::kInvalidArgument,
               {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"});
  ts.clear();
  add_pair(&ts, 1, "up_proj", 4, 16, 24);
  ts.erase(ts.begin());  // drop A
  expect_error(peft_config(4, 8, {"up_proj"}), ts, StatusCode::kInvalidArgument,
               {"base_model.model.model.layers.1.mlp.up_proj.lora_A.weight"});
}

TEST(LoraAdapter, UnknownTensorNames) {
  for (const char* name : {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
                           "base_model.model.lm_head.lora_A.weight",
                           "base_model.model.model.layers.0.mlp.q_proj.lora_A.weight",
                           "base_model.model.model.embed_tokens.lora_embedding_A",
                           "model.layers.0.self_attn.q_proj.lora_A.weight"}) {
    std::vector<TensorToWrite> ts = qv_tensors();
    ts.push_back(f32_tensor(name, {4, 16}, 0));
    expect_error(peft_config(4, 8, {"q_proj", "v_proj"}), ts, StatusCode::kInvalidArgument,
                 {"unrecognized tensor", name});
  }
  expect_error(peft_config(4, 8, {"q_proj"}), {}, StatusCode::kInvalidArgument,
               {"no LoRA tensors"});
}

TEST(LoraAdapter, MissingFiles) {
  TempDir dir;
  auto a = LoraAdapter::load_dir(dir.path(), base_config());
  EXPECT_EQ(a.status().code(), StatusCode::kNotFound);
  EXPECT_NE(a.status().message().find("adapter_config.json"), std::string::npos);
  std::ofstream(dir.path() + "/adapter_config.json")
      << peft_config(4, 8, {"q_proj", "v_proj"}).dump();
  a = LoraAdapter::load_dir(dir.path(), base_config());
  EXPECT_EQ(a.status().code(), StatusCode::kNotFound);
  EXPECT_NE(a.status().message().find("adapter_model.safetensors"), std::string::npos);
  std::ofstream(dir.path() + "/adapter_model.safetensors") << "12345678garbage";
  a = LoraAdapter::load_dir(dir.path(), base_config());
  EXPECT_EQ(a.status().code(), StatusCode::kDataLoss) << a.status();
  ASSERT_TRUE(write_safetensors(dir.path() + "/adapter_model.safetensors", qv_tensors()).ok());
  EXPECT_TRUE(LoraAdapter::load_dir(dir.path(), base_config()).ok());
  std::ofstream(dir.path() + "/adapter_config.json") << "{not json";
  a = LoraAdapter::load_dir(dir.path(), base_config());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument) << a.status();
  EXPECT_NE(a.status().message().find("adapter_config.json"), std::string::npos) << a.status();
  a = load(json::object(), qv_tensors());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("peft_type"), std::string::npos) << a.status();
}

// --- numbers are checked, not trusted (issue 18) ---

// qv_tensors() with element `index` of tensor `name` replaced by `value`.
std::vector<TensorToWrite> qv_with(const std::string& name, size_t index, float value,
                                   DType dtype = DType::kF32) {
  std::vector<TensorToWrite> ts;
  for (int l = 0; l < 2; ++l) {
    add_pair(&ts, l, "q_proj", 4, 16, 16, dtype);
    add_pair(&ts, l, "v_proj", 4, 16, 8, dtype);
  }
  for (TensorToWrite& t : ts) {
    if (t.name != name) continue;
    convert_from_f32(dtype, &value, &t.bytes[index * dtype_size(dtype)], 1);
    return ts;
  }
  ADD_FAILURE() << "no tensor " << name;
  return ts;
}

TEST(LoraAdapterNumbers, NonFiniteWeightsAreRefusedNamingTheTensorInEveryDtype) {
  const json cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  const std::string a1 = module_prefix(1, "v_proj") + ".lora_A.weight";
  const std::string b0 = module_prefix(0, "q_proj") + ".lora_B.weight";
  // Element 21 of A [4, 16] is row 1, column 5; of B [16, 4] row 5, column 1.
  expect_error(cfg, qv_with(a1, 21, NAN), StatusCode::kInvalidArgument,
               {a1, "(F32)", "NaN at [1, 5]", "must be finite"});
  expect_error(cfg, qv_with(b0, 21, INFINITY, DType::kBF16), StatusCode::kInvalidArgument,
               {b0, "(BF16)", "an infinity at [5, 1]"});
  expect_error(cfg, qv_with(a1, 0, -INFINITY, DType::kF16), StatusCode::kInvalidArgument,
               {a1, "(F16)", "infinity at [0, 0]"});
  expect_error(cfg, qv_with(b0, 63, NAN, DType::kF16), StatusCode::kInvalidArgument,
               {b0, "NaN at [15, 3]"});
  // The largest finite values are fine (and a control that the helper works).
  auto ok = load(cfg, qv_with(a1, 21, 65504.0f, DType::kF16));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->weights(1, LoraModule::kV).a[21], 65504.0f);
}

TEST(LoraAdapterNumbers, AbsurdScalesAreRefusedNamingTheField) {
  const auto ts = qv_tensors();
  // The two reported cases: lora_alpha 1e308 (overflows to inf in f32) and
  // 2^40 (finite, but uniform garbage).
  expect_error(peft_config(4, 1e308, {"q_proj", "v_proj"}), ts, StatusCode::kInvalidArgument,
               {"lora_alpha 1e+308", "scale 2.5e+307", "lora_alpha / r", "|scale| <= 10000"});
  expect_error(peft_config(4, std::ldexp(1.0, 40), {"q_proj", "v_proj"}), ts,
               StatusCode::kInvalidArgument,
               {"lora_alpha 1.09951e+12", "scale 2.74878e+11", "|scale| <= 10000"});
  json cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["alpha_pattern"] = {{"v_proj", 1e9}};
  expect_error(cfg, ts, StatusCode::kInvalidArgument,
               {"alpha_pattern[\"v_proj\"] 1e+09", "v_proj", "scale 2.5e+08"});
  // rsLoRA divides by sqrt(r): alpha 3e4 at r 4 is 1.5e4, refused; 1.9e4 is
  // 9.5e3, accepted.
  cfg = peft_config(4, 3e4, {"q_proj", "v_proj"});
  cfg["use_rslora"] = true;
  expect_error(cfg, ts, StatusCode::kInvalidArgument, {"sqrt(r), use_rslora", "scale 15000"});
  cfg["lora_alpha"] = 1.9e4;
  auto a = load(cfg, ts);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FLOAT_EQ((*a)->weights(0, LoraModule::kQ).scale, 9500.0f);
  // Negative and zero scales are PEFT-legal.
  a = load(peft_config(4, -8, {"q_proj", "v_proj"}), ts);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FLOAT_EQ((*a)->weights(0, LoraModule::kQ).scale, -2.0f);
  a = load(peft_config(4, 0, {"q_proj", "v_proj"}), ts);
  ASSERT_TRUE(a.ok()) << a.status();
}

TEST(LoraAdapterNumbers, NonFiniteAlphaInTheJsonTextIsRefused) {
  // JSON cannot spell NaN or infinity. Python's json writes them as NaN /
  // Infinity anyway, and a literal too large for a double overflows: all are
  // refused while parsing, the message quoting the offending text.
  struct Case {
    std::string field, needle;
  };
  for (const Case& c : {Case{"\"lora_alpha\": 1e400", "number overflow parsing '1e400'"},
                        Case{"\"alpha_pattern\": {\"q_proj\": -1e999}", "'-1e999'"},
                        Case{"\"lora_alpha\": Infinity", "'\"lora_alpha\": I'"},
                        Case{"\"lora_alpha\": NaN", "'\"lora_alpha\": N'"}}) {
    SCOPED_TRACE(c.field);
    TempDir dir;
    write_adapter(dir.path(), peft_config(4, 8, {"q_proj", "v_proj"}), qv_tensors());
    std::string text = R"({"peft_type": "LORA", "r": 4, "target_modules": ["q_proj", "v_proj"], )" +
                       c.field + "}";
    write_file(dir.path() + "/adapter_config.json", text);
    auto a = LoraAdapter::load_dir(dir.path(), base_config());
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument) << a.status();
    EXPECT_NE(a.status().message().find("adapter_config.json is not valid JSON"),
              std::string::npos)
        << a.status();
    EXPECT_NE(a.status().message().find(c.needle), std::string::npos) << a.status();
  }
}

TEST(LoraAdapterNumbers, RankBounds) {
  expect_error(peft_config(0, 8, {"q_proj"}), qv_tensors(), StatusCode::kInvalidArgument,
               {"r must be an integer in [1, 65536], got 0"});
  expect_error(peft_config(65537, 8, {"q_proj"}), qv_tensors(), StatusCode::kInvalidArgument,
               {"r must be an integer in [1, 65536], got 65537"});
  json cfg = peft_config(4, 8, {"q_proj", "v_proj"});
  cfg["rank_pattern"] = {{"q_proj", 0}};
  expect_error(cfg, qv_tensors(), StatusCode::kInvalidArgument,
               {"rank_pattern[\"q_proj\"]", "[1, 65536], got 0"});
  cfg["rank_pattern"] = {{"q_proj", -3}};
  expect_error(cfg, qv_tensors(), StatusCode::kInvalidArgument, {"rank_pattern[\"q_proj\"]"});
  cfg["rank_pattern"] = {{"q_proj", 2.5}};
  expect_error(cfg, qv_tensors(), StatusCode::kInvalidArgument,
               {"rank_pattern[\"q_proj\"] must be an integer"});
}

// The file named in errors is the adapter's, wherever it comes from.
TEST(LoraAdapterNumbers, CorruptAdapterFileErrorsNameTheAdapterFile) {
  TempDir dir;
  write_adapter(dir.path(), peft_config(4, 8, {"q_proj", "v_proj"}), qv_tensors());
  const std::string path = dir.path() + "/adapter_model.safetensors";
  std::string bytes = read_file(path);
  bytes += "trailing";
  write_file(path, bytes);
  auto a = LoraAdapter::load_dir(dir.path(), base_config());
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(a.status().message().find(path + ": the tensors cover"), std::string::npos)
      << a.status();
  auto b = LoraAdapter::load_bytes(peft_config(4, 8, {"q_proj", "v_proj"}).dump(), bytes,
                                   base_config(), "upload 'x'");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(b.status().message().find("adapter_model.safetensors of upload 'x': "),
            std::string::npos)
      << b.status();
}

}  // namespace
}  // namespace loraserve
