// The offline reference: `loraserve generate --json` run as a subprocess on
// the same checkpoint, greedy. Served results must equal these. Results are
// cached per (model, adapter, prompt, max_new_tokens) for the life of the
// test process, and run_offline_many() runs at most two at a time (CI has
// two cores). Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loraserve::e2e {

struct OfflineJob {
  std::string model;    // model directory
  std::string adapter;  // adapter directory; "" = base model
  std::vector<uint32_t> prompt;
  int max_new_tokens = 16;
};

struct OfflineResult {
  bool ok = false;
  std::string error;  // why it failed (with the command's stderr)
  std::vector<uint32_t> tokens;
  std::vector<float> logprobs;
};

OfflineResult run_offline(const OfflineJob& job);
std::vector<OfflineResult> run_offline_many(const std::vector<OfflineJob>& jobs,
                                            int parallelism = 2);

}  // namespace loraserve::e2e
