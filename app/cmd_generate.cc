#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/commands.h"
#include "app/engine_setup.h"
#include "checkpoint/lora_adapter.h"
#include "checkpoint/model_weights.h"
#include "engine/engine.h"
#include "scheduler/offline.h"
#include "tokenizer/tokenizer.h"

namespace loraserve::cli {

namespace {

struct GenerateFlags {
  std::string model;
  // One request per entry ("-" = the base model), all in one batch; none =
  // one request on the base model.
  std::vector<std::string> adapters;
  std::vector<int32_t> prompt_ids;
  std::string prompt;  // text, encoded with the model's tokenizer.json
  int32_t max_new_tokens = 16;
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  std::vector<int32_t> stop_ids;
  bool json = false;
  std::string logits_out;
  EngineFlags engine;
  bool stats = false;
};

int fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.to_string().c_str());
  return 1;
}

int run_generate(GenerateFlags f) {
  auto weights = ModelWeights::open(f.model);
  if (!weights.ok()) return fail(weights.status().with_context("loading model " + f.model));
  std::shared_ptr<const ModelWeights> model = std::move(*weights);
  const ModelConfig& config = model->config();
  std::shared_ptr<const Tokenizer> tokenizer;
  if (!f.prompt.empty()) {
    auto tok = Tokenizer::load_dir(f.model);
    if (!tok.ok()) return fail(tok.status().with_context("--prompt needs the model's tokenizer"));
    tokenizer = *tok;
    auto ids = tokenizer->encode(f.prompt, /*add_special_tokens=*/true);
    if (!ids.ok()) return fail(ids.status());
    f.prompt_ids = *ids;
  }
  if (f.prompt_ids.empty()) return fail(invalid_argument("give --prompt-ids or --prompt"));

  std::vector<std::string> adapters = f.adapters;
  if (adapters.empty()) adapters.push_back("-");
  const size_t n_req = adapters.size();

  const int64_t tokens = static_cast<int64_t>(f.prompt_ids.size()) + f.max_new_tokens;
  auto engine = create_engine(f.engine, model,
                              static_cast<int32_t>(std::max<int64_t>(tokens * n_req, 16)),
                              static_cast<int32_t>(n_req));
  if (!engine.ok()) return fail(engine.status());

  std::vector<GenerationRequest> reqs(n_req);
  for (size_t i = 0; i < n_req; ++i) {
    GenerationRequest& req = reqs[i];
    req.prompt = f.prompt_ids;
    req.max_new_tokens = f.max_new_tokens;
    req.sampling.temperature = f.temperature;
    req.sampling.top_k = f.top_k;
    req.sampling.top_p = f.top_p;
    req.sampling.seed = f.seed;
    req.stop_token_ids = f.stop_ids;
    req.want_logits = !f.logits_out.empty();
    if (adapters[i] == "-") continue;
    const std::string id = "cli-" + std::to_string(i);
    auto loaded = LoraAdapter::load_dir(adapters[i], config);
    if (!loaded.ok()) return fail(loaded.status().with_context("loading adapter " + adapters[i]));
    Status s = (*engine)->register_adapter(id, **loaded);
    if (!s.ok()) return fail(s);
    req.adapter_id = id;
  }

  std::vector<GenerationResult> results;
  Status s = generate(**engine, reqs, &results);
  if (!s.ok()) return fail(s);
  for (const GenerationResult& r : results) {
    if (!r.error.ok()) return fail(r.error);
  }

  for (size_t i = 0; i < n_req && !f.logits_out.empty(); ++i) {
    // One request: the file as named; several: FILE.0, FILE.1, ...
    const std::string path = n_req == 1 ? f.logits_out : f.logits_out + "." + std::to_string(i);
    std::ofstream out(path, std::ios::binary);
    for (const auto& row : results[i].logits) {
      out.write(reinterpret_cast<const char*>(row.data()),
                static_cast<std::streamsize>(row.size() * sizeof(float)));
    }
    if (!out) return fail(internal_error("cannot write " + path));
  }
  if (f.stats) {
    const EngineStats st = (*engine)->stats();
    nlohmann::json j;
    j["page_bytes"] = st.page_bytes;
    j["pages"] = {{"total", st.pool.total}, {"free", st.pool.free}, {"kv", st.pool.kv},
                  {"adapter", st.pool.adapter}};
    j["adapters"] = {{"registered", st.registered_adapters}, {"resident", st.adapters.resident},
                     {"swap_ins", st.adapters.swap_ins}, {"evictions", st.adapters.evictions},
                     {"bytes_copied", st.adapters.bytes_copied}};
    std::fprintf(stderr, "%s\n", j.dump().c_str());
  }
  for (size_t i = 0; i < n_req; ++i) {
    const GenerationResult& r = results[i];
    if (f.json) {
      nlohmann::json j;
      if (n_req > 1) j["adapter"] = adapters[i];
      j["tokens"] = r.tokens;
      j["logprobs"] = r.logprobs;
      j["finish_reason"] = r.finish == GenerationFinish::kStop ? "stop" : "length";
      if (tokenizer) {
        DecodeOptions o;
        o.skip_special_tokens = true;
        o.continuation = true;
        j["text"] = tokenizer->decode(r.tokens, o);
      }
      std::printf("%s\n", j.dump().c_str());
      continue;
    }
    if (n_req > 1) std::printf("[%s] ", adapters[i].c_str());
    if (tokenizer) {
      DecodeOptions o;
      o.skip_special_tokens = true;
      o.continuation = true;
      std::printf("%s\n", tokenizer->decode(r.tokens, o).c_str());
    } else {
      std::printf("tokens:");
      for (int32_t t : r.tokens) std::printf(" %d", t);
      std::printf("\n");
    }
  }
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, Runner* runner) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate tokens offline with the engine");
  cmd->add_option("--model", f->model, "HF model directory")->required();
  cmd->add_option("--adapter", f->adapters,
                  "PEFT LoRA adapter directory; repeat it to run one request per adapter in one "
                  "batch (\"-\" = a request on the base model); JSON lines and --logits-out "
                  "FILE.<i> follow their order");
  auto* ids = cmd->add_option("--prompt-ids", f->prompt_ids, "Prompt token ids, comma separated")
                  ->delimiter(',');
  auto* text = cmd->add_option("--prompt", f->prompt,
                               "Prompt text, encoded with the model's tokenizer.json (BOS added)");
  ids->excludes(text);
  cmd->add_option("--max-new-tokens", f->max_new_tokens)->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--temperature", f->temperature, "0 = greedy")->check(CLI::Range(0.0f, 100.0f))
      ->capture_default_str();
  cmd->add_option("--top-k", f->top_k, "0 = off")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", f->top_p, "1 = off")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--seed", f->seed);
  cmd->add_option("--stop-ids", f->stop_ids, "Stop after emitting one of these")->delimiter(',');
  cmd->add_flag("--json", f->json, "Print {\"tokens\":[...],\"logprobs\":[...]} on one line");
  cmd->add_option("--logits-out", f->logits_out,
                  "Write the logits of every step as raw little-endian f32 [steps, vocab]");
  add_engine_flags(cmd, &f->engine);
  cmd->add_flag("--stats", f->stats, "Print pool and adapter-cache statistics as JSON on stderr");
  cmd->callback([f, runner]() { *runner = [f]() { return run_generate(*f); }; });
}

}  // namespace loraserve::cli
