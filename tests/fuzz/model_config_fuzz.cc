// libFuzzer target for the Hugging Face config.json reader
// (checkpoint/model_config.h). Checks: never a crash, hang or UB; a refusal
// is INVALID_ARGUMENT or UNIMPLEMENTED; an accepted config has positive,
// bounded dimensions whose derived sizes (q_dim, kv_dim, embeddings) fit
// int64 (UBSan catches an overflow), finite numbers, and survives a round
// trip through to_json_text.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "checkpoint/model_config.h"

using namespace loraserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto c = ModelConfig::from_json_text(text);
  if (!c.ok()) {
    const StatusCode code = c.status().code();
    if (code != StatusCode::kInvalidArgument && code != StatusCode::kUnimplemented) std::abort();
    return 0;
  }
  if (c->hidden_size <= 0 || c->intermediate_size <= 0 || c->num_hidden_layers <= 0 ||
      c->num_attention_heads <= 0 || c->num_key_value_heads <= 0 || c->head_dim <= 0 ||
      c->vocab_size <= 0 || c->max_position_embeddings <= 0) {
    std::abort();
  }
  if (c->num_attention_heads % c->num_key_value_heads != 0) std::abort();
  if (!std::isfinite(c->rms_norm_eps) || !(c->rms_norm_eps > 0)) std::abort();
  if (!std::isfinite(c->rope_theta) || !(c->rope_theta > 0)) std::abort();
  // The sizes the engine derives (signed overflow is UB: UBSan aborts).
  volatile int64_t sizes = c->q_dim() + c->kv_dim() + c->vocab_size * c->hidden_size +
                           c->hidden_size * c->intermediate_size;
  (void)sizes;
  auto again = ModelConfig::from_json_text(c->to_json_text());
  if (!again.ok() || again->to_json_text() != c->to_json_text()) std::abort();
  return 0;
}
