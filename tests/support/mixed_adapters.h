// The mixed-adapter fixture the engine tests share (cpu engine tests and
// the cuda-vs-cpu GPU test): a tiny synthetic model with four attention
// adapters (ranks 8..64) and two MLP-targeting ones (ranks 4, 24), and a
// batch that mixes base and adapter requests, late joins and chunked
// prefill.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "engine/engine.h"
#include "scheduler/offline.h"
#include "checkpoint/lora_adapter.h"
#include "checkpoint/synth.h"

namespace loraserve::testing_util {

// The adapters' directories under the fixture, in registration order.
inline const std::vector<std::string>& mixed_adapter_dirs() {
  static const std::vector<std::string> dirs = {
      "attn/adapters/adapter-000", "attn/adapters/adapter-001", "attn/adapters/adapter-002",
      "attn/adapters/adapter-003", "mlp/adapters/adapter-000",  "mlp/adapters/adapter-001"};
  return dirs;
}

// Writes DIR/attn/{model,adapters} and DIR/mlp/adapters.
inline Status write_mixed_adapters_fixture(const std::string& dir) {
  LS_ASSIGN_OR_RETURN(ModelConfig tiny, synth_preset("tiny"));
  SynthOptions attn;
  attn.config = tiny;
  attn.seed = 11;
  attn.num_adapters = 4;
  attn.ranks = {8, 16, 32, 64};
  LS_RETURN_IF_ERROR(synth_write(attn, dir + "/attn"));
  SynthOptions mlp = attn;
  mlp.seed = 12;
  mlp.num_adapters = 2;
  mlp.ranks = {4, 24};
  mlp.targets = {"q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"};
  mlp.write_model = false;
  return synth_write(mlp, dir + "/mlp");
}

// Registers the six adapters under their directory names; returns the ids.
inline StatusOr<std::vector<std::string>> register_mixed_adapters(Engine& engine,
                                                                  const std::string& dir) {
  for (const std::string& rel : mixed_adapter_dirs()) {
    LS_ASSIGN_OR_RETURN(auto adapter, LoraAdapter::load_dir(dir + "/" + rel, engine.config()));
    LS_RETURN_IF_ERROR(engine.register_adapter(rel, *adapter));
  }
  return mixed_adapter_dirs();
}

// Appends a request that keeps its logits: `n` new tokens, joining at step
// `join`, prefilled in chunks of `chunk` tokens (0: at once).
inline void add_request(std::vector<GenerationRequest>* reqs, const std::string& id,
                        std::vector<int32_t> prompt, int32_t n, int32_t join, int32_t chunk) {
  GenerationRequest r;
  r.adapter_id = id;
  r.prompt = std::move(prompt);
  r.max_new_tokens = n;
  r.join_step = join;
  r.prefill_chunk = chunk;
  r.want_logits = true;
  reqs->push_back(std::move(r));
}

// Nine requests over the six adapter ids and the base model: two requests
// share an adapter, three join late, two prefill in chunks.
inline std::vector<GenerationRequest> mixed_requests(const std::vector<std::string>& ids) {
  std::vector<GenerationRequest> reqs;
  auto add = [&](const std::string& id, std::vector<int32_t> prompt, int32_t n, int32_t join,
                 int32_t chunk) { add_request(&reqs, id, std::move(prompt), n, join, chunk); };
  add("", {1, 17, 300, 42, 9}, 12, 0, 0);
  add(ids[0], {1, 17, 300, 42, 9}, 10, 0, 0);               // same prompt as base, rank 8
  add(ids[1], {5, 6, 7, 8, 9, 10, 11, 12, 13}, 8, 2, 4);    // joins later, chunked prefill
  add(ids[2], {900, 3}, 15, 1, 0);
  add(ids[3], {77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93}, 6, 3, 5);
  add(ids[4], {2, 4, 8, 16, 32, 64, 128}, 9, 0, 0);         // MLP-targeting adapter
  add("", {1000, 1001, 1002}, 7, 4, 0);
  add(ids[5], {10, 20, 30, 40}, 11, 1, 2);
  add(ids[1], {12, 13}, 5, 0, 0);                           // two requests share an adapter
  return reqs;
}

}  // namespace loraserve::testing_util
