// Runs a set of generation requests to completion on one Engine, stepping
// them together: each step carries every active request's prefill chunk or
// decode token, so prefill and decode, and many adapters, share a batch.
// A request whose adapter or KV does not fit in the pool yet waits until
// running requests finish (it fails only when nothing else is running).
// This is the offline path (`loraserve generate`, tests); the serving path
// gets the same from the scheduler.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/engine.h"

namespace loraserve {

struct GenerationRequest {
  std::string adapter_id;  // "" = base model
  std::vector<int32_t> prompt;
  int32_t max_new_tokens = 16;
  kernels::SamplingConfig sampling;
  std::vector<int32_t> stop_token_ids;  // generation ends after emitting one of these
  bool want_logits = false;             // keep the logits each token was drawn from
  int32_t join_step = 0;                // first step the request takes part in
  int32_t prefill_chunk = 0;            // prompt tokens per step; 0 = whole prompt at once
};

enum class GenerationFinish { kLength, kStop, kError };

struct GenerationResult {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<std::vector<float>> logits;  // [tokens][vocab] when want_logits
  GenerationFinish finish = GenerationFinish::kLength;
  // Set with kError: this request failed alone (its logits were not finite;
  // DATA_LOSS naming the adapter) and its tokens stop before the bad one.
  Status error;
};

// A non-OK return fails the whole call (bad requests, engine errors); a
// request whose logits turn non-finite fails alone (its result's error).
Status generate(Engine& engine, const std::vector<GenerationRequest>& requests,
                std::vector<GenerationResult>* results);

// The error a request gets when its logits are not finite: DATA_LOSS naming
// the adapter ("" = the base model) and the token it was drawing.
Status non_finite_logits_error(const std::string& adapter_id, size_t token_index);

}  // namespace loraserve
