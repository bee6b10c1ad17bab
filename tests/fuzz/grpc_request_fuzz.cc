// libFuzzer target for gRPC request validation: wire bytes parsed as a
// GenerateRequest, then exactly what the server runs before queueing one
// (server/grpc_request.h, validate_adapter_id, server/generation_params.h
// with a real tokenizer, scheduler/request_checks.h against a tiny model),
// without a server. Checks: never a crash, hang or UB; a refusal is
// INVALID_ARGUMENT or FAILED_PRECONDITION; what passes is within the
// model's vocabulary and context, with finite sampling values in range.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "proto/loraserve.pb.h"
#include "scheduler/request_checks.h"
#include "server/adapter_paths.h"
#include "server/generation_params.h"
#include "server/grpc_request.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_train.h"

using namespace loraserve;

namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.vocab_size = 1024;
  c.max_position_embeddings = 2048;
  c.eos_token_id = 2;
  return c;
}

bool refusal(const Status& s) {
  return s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kFailedPrecondition;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::shared_ptr<const Tokenizer> tok = [] {
    auto f = train_tokenizer(1024, 1, 2, 2048);
    return *Tokenizer::from_json_text(f->tokenizer_json, f->tokenizer_config_json);
  }();
  static const ModelConfig config = tiny_config();
  v1::GenerateRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  // The first byte picks whether the server has a tokenizer.
  const Tokenizer* tokenizer = size > 0 && (data[0] & 1) ? tok.get() : nullptr;
  GenerationInput in;
  Status s = grpc_request_to_input(req, &in);
  if (s.ok() && !in.adapter_id.empty()) s = validate_adapter_id(in.adapter_id);
  GenerationParams p;
  if (s.ok()) s = to_generation_params(in, tokenizer, &p);
  if (s.ok()) s = check_request_params(config, 16, 4096, &p);
  if (!s.ok()) {
    if (!refusal(s)) std::abort();
    return 0;
  }
  if (p.prompt.empty() || p.max_new_tokens < 1 || p.max_new_tokens > 4096) std::abort();
  if (static_cast<int64_t>(p.prompt.size()) + p.max_new_tokens > config.max_position_embeddings) {
    std::abort();
  }
  for (int32_t id : p.prompt) {
    if (id < 0 || id >= config.vocab_size) std::abort();
  }
  const kernels::SamplingConfig& sc = p.sampling;
  if (!std::isfinite(sc.temperature) || sc.temperature < 0 || sc.temperature > 100) std::abort();
  if (!(sc.top_p > 0 && sc.top_p <= 1) || sc.top_k < 0) std::abort();
  return 0;
}
