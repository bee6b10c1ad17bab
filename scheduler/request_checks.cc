#include "scheduler/request_checks.h"

#include <cmath>
#include <string>

namespace loraserve {

Status check_request_params(const ModelConfig& c, int32_t default_max_new_tokens,
                            int32_t max_new_tokens_limit, GenerationParams* params) {
  if (params->prompt.empty()) return invalid_argument("prompt is empty");
  for (int32_t id : params->prompt) {
    if (id < 0 || id >= c.vocab_size) {
      return invalid_argument("prompt token id " + std::to_string(id) +
                              " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
    }
  }
  if (params->max_new_tokens == 0) params->max_new_tokens = default_max_new_tokens;
  if (params->max_new_tokens < 0 || params->max_new_tokens > max_new_tokens_limit) {
    return invalid_argument("max_new_tokens must be in [1, " +
                            std::to_string(max_new_tokens_limit) + "]");
  }
  const int64_t total = static_cast<int64_t>(params->prompt.size()) + params->max_new_tokens;
  if (total > c.max_position_embeddings) {
    return invalid_argument("prompt of " + std::to_string(params->prompt.size()) +
                            " tokens plus " + std::to_string(params->max_new_tokens) +
                            " new tokens exceeds the model's context of " +
                            std::to_string(c.max_position_embeddings));
  }
  const kernels::SamplingConfig& s = params->sampling;
  if (!std::isfinite(s.temperature) || s.temperature < 0 || s.temperature > 100) {
    return invalid_argument("temperature must be in [0, 100]");
  }
  if (!std::isfinite(s.top_p) || s.top_p < 0 || s.top_p > 1) {
    return invalid_argument("top_p must be in [0, 1]");
  }
  if (s.top_k < 0) return invalid_argument("top_k must not be negative");
  if (params->sampling.top_p == 0) params->sampling.top_p = 1.0f;  // proto default: off
  if (params->eos_token_id < 0) params->eos_token_id = static_cast<int32_t>(c.eos_token_id);
  return ok_status();
}

}  // namespace loraserve
