// Qwen2 and Qwen3 checkpoints served over gRPC. Each is written in the
// layout Hugging Face's save_pretrained gives it (synth: config.json with
// architectures Qwen2ForCausalLM / Qwen3ForCausalLM, q/k/v_proj.bias or
// q_norm/k_norm under their HF names, Qwen2's tied embeddings without an
// lm_head tensor, Qwen's tokenizer files and ChatML template) with PEFT
// adapters of three ranks on all seven modules. A real `loraserve serve`
// loads it; greedy streams for the base model and every adapter, run
// concurrently, equal `loraserve generate`, and a text prompt is encoded
// the Qwen way (no BOS).
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "checkpoint/synth.h"
#include "tests/e2e/e2e_util.h"
#include "tokenizer/tokenizer.h"

namespace loraserve::e2e {
namespace {

struct FamilyData {
  std::string root, model, adapters, error;
};

// synth --preset P --adapters 3 --ranks 8,16,48 (all seven modules), once
// per process; removed at exit.
const FamilyData& family_data(const std::string& preset) {
  struct Holder {
    std::map<std::string, FamilyData> data;
    ~Holder() {
      std::error_code ec;
      for (auto& [k, d] : data) {
        if (!d.root.empty()) std::filesystem::remove_all(d.root, ec);
      }
    }
  };
  static Holder holder;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto it = holder.data.find(preset);
  if (it != holder.data.end()) return it->second;
  FamilyData& d = holder.data[preset];
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "loraserve-e2e-qwen-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    d.error = "mkdtemp failed";
    return d;
  }
  d.root = tmpl;
  d.model = tmpl + "/model";
  d.adapters = tmpl + "/adapters";
  auto config = synth_preset(preset);
  if (!config.ok()) {
    d.error = config.status().to_string();
    return d;
  }
  SynthOptions o;
  o.config = *config;
  o.seed = 17;
  o.num_adapters = 3;
  o.ranks = {8, 16, 48};
  o.targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  Status s = synth_write(o, d.root);
  if (!s.ok()) d.error = s.to_string();
  return d;
}

std::vector<uint32_t> prompt_of(uint32_t seed, int len) {
  std::vector<uint32_t> p;
  for (int i = 0; i < len; ++i)
    p.push_back(3 + (seed * 131 + static_cast<uint32_t>(i) * 97) % 1000);
  return p;
}

class QwenSuite : public ServerSuite {
 protected:
  static void start_family(const std::string& preset) {
    const FamilyData& d = family_data(preset);
    if (!d.error.empty()) {
      server_error() = "synth " + preset + ": " + d.error;
      return;
    }
    ServerOptions o;
    o.model = d.model;
    o.adapter_root = d.adapters;
    o.pool_mb = 64;
    o.extra_args = {"--log-level", "warn"};
    start_suite_server(o);
  }

  // Base model and the three adapters, hot-loaded, four streams at once.
  void served_equals_offline(const std::string& preset) {
    const FamilyData& d = family_data(preset);
    ASSERT_TRUE(d.error.empty()) << d.error;
    const int n = 20;
    std::vector<std::string> ids = {""};
    std::vector<OfflineJob> jobs;
    for (int a = -1; a < 3; ++a) {
      OfflineJob j;
      j.model = d.model;
      if (a >= 0) {
        const std::string name = "adapter-00" + std::to_string(a);
        j.adapter = d.adapters + "/" + name;
        v1::AdapterInfo info;
        grpc::Status s = load_adapter(stub(), preset + "-" + name, name, &info);
        ASSERT_TRUE(s.ok()) << describe(s);
        EXPECT_EQ(info.rank(), a == 0 ? 8u : a == 1 ? 16u : 48u);
        EXPECT_EQ(info.target_modules_size(), 7);
        ids.push_back(preset + "-" + name);
      }
      j.prompt = prompt_of(static_cast<uint32_t>(a + 2), 9 + 4 * (a + 1));
      j.max_new_tokens = n;
      jobs.push_back(j);
    }
    const std::vector<OfflineResult> want = run_offline_many(jobs);
    for (const OfflineResult& w : want) ASSERT_TRUE(w.ok) << w.error;

    std::vector<StreamResult> got(jobs.size());
    std::vector<std::thread> threads;
    for (size_t k = 0; k < jobs.size(); ++k) {
      threads.emplace_back([&, k] {
        auto stub = server()->stub();
        got[k] = run_generate(stub.get(), make_request(ids[k], jobs[k].prompt, n));
      });
    }
    for (std::thread& t : threads) t.join();
    std::set<std::vector<uint32_t>> distinct;
    for (size_t k = 0; k < jobs.size(); ++k) {
      SCOPED_TRACE(preset + " request " + std::to_string(k) + " adapter '" + ids[k] + "'");
      EXPECT_TRUE(matches_offline(got[k], want[k], jobs[k].prompt.size()));
      distinct.insert(want[k].tokens);
    }
    EXPECT_EQ(distinct.size(), jobs.size()) << "requests should differ (prompts and adapters)";
  }

  // Text in: Qwen's tokenizer adds no BOS, so the prompt is exactly the
  // encoded text; the same request by ids gives the same tokens.
  void text_prompt_has_no_bos(const std::string& preset) {
    const FamilyData& d = family_data(preset);
    auto tok = Tokenizer::load_dir(d.model);
    ASSERT_TRUE(tok.ok()) << tok.status();
    const std::string text =
        "<|im_start|>user\nThe morning train was late.<|im_end|>\n"
        "<|im_start|>assistant\n";
    auto ids = (*tok)->encode(text, /*add_special_tokens=*/true);
    ASSERT_TRUE(ids.ok());
    ASSERT_EQ(ids->front(), *(*tok)->token_to_id("<|im_start|>"));
    v1::GenerateRequest by_text;
    by_text.set_prompt(text);
    by_text.mutable_sampling()->set_max_new_tokens(12);
    by_text.mutable_sampling()->set_ignore_eos(true);
    const StreamResult a = run_generate(stub(), by_text);
    ASSERT_TRUE(a.status.ok()) << describe(a.status);
    EXPECT_EQ(a.final_msg.usage().prompt_tokens(), ids->size());
    const StreamResult b =
        run_generate(stub(), make_request("", std::vector<uint32_t>(ids->begin(), ids->end()), 12));
    ASSERT_TRUE(b.status.ok()) << describe(b.status);
    EXPECT_EQ(a.tokens, b.tokens);
  }

  // An adapter of the other family's shapes is refused by name.
  void foreign_adapter_is_refused(const std::string& preset, const std::string& other) {
    const FamilyData& o = family_data(other);
    ASSERT_TRUE(o.error.empty()) << o.error;
    std::error_code ec;
    std::filesystem::copy(
        o.adapters + "/adapter-000", family_data(preset).adapters + "/foreign",
        std::filesystem::copy_options::recursive | std::filesystem::copy_options::skip_existing,
        ec);
    ASSERT_FALSE(ec) << ec.message();
    grpc::Status s = load_adapter(stub(), "foreign", "foreign");
    EXPECT_TRUE(has_code(s, grpc::StatusCode::FAILED_PRECONDITION, "q_proj.lora_B.weight"))
        << describe(s);
  }
};

class Qwen2Serving : public QwenSuite {
 protected:
  static void SetUpTestSuite() { start_family("qwen2-tiny"); }
  static void TearDownTestSuite() { stop_suite_server(); }
};

class Qwen3Serving : public QwenSuite {
 protected:
  static void SetUpTestSuite() { start_family("qwen3-tiny"); }
  static void TearDownTestSuite() { stop_suite_server(); }
};

TEST_F(Qwen2Serving, GreedyOutputEqualsOfflineForBaseAndAdapters) {
  served_equals_offline("qwen2-tiny");
}
TEST_F(Qwen2Serving, TextPromptHasNoBos) { text_prompt_has_no_bos("qwen2-tiny"); }
TEST_F(Qwen2Serving, Qwen3AdapterIsRefusedByName) {
  foreign_adapter_is_refused("qwen2-tiny", "qwen3-tiny");
}

TEST_F(Qwen3Serving, GreedyOutputEqualsOfflineForBaseAndAdapters) {
  served_equals_offline("qwen3-tiny");
}
TEST_F(Qwen3Serving, TextPromptHasNoBos) { text_prompt_has_no_bos("qwen3-tiny"); }
TEST_F(Qwen3Serving, Qwen2AdapterIsRefusedByName) {
  foreign_adapter_is_refused("qwen3-tiny", "qwen2-tiny");
}

}  // namespace
}  // namespace loraserve::e2e
