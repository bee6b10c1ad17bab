// libFuzzer target for gRPC request validation: wire bytes parsed as a
// GenerateRequest, then exactly what the server runs before queueing one
// (server/grpc_request.h with a ChatML template for `messages`, validate_adapter_id, server/generation_params.h
// with a real tokenizer, scheduler/request_checks.h against a tiny model),
// without a server. Checks: never a crash, hang or UB; a refusal is
// INVALID_ARGUMENT or FAILED_PRECONDITION; what passes is within the
// model's vocabulary and context, with finite sampling values in range.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "chat_template/chat_template.h"
#include "proto/loraserve.pb.h"
#include "scheduler/request_checks.h"
#include "server/adapter_paths.h"
#include "server/chat_prompt.h"
#include "server/generation_params.h"
#include "server/grpc_request.h"
#include "tests/fuzz/request_fixture.h"

using namespace loraserve;

namespace {

// A ChatML template like synth's, so chats are rendered as the server would.
ChatPrompt chatml() {
  static const char* kText =
      "{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
      "'<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ "
      "'<|im_start|>assistant\\n' }}{%- endif %}";
  auto parsed = ChatTemplate::parse(kText);
  if (!parsed.ok()) std::abort();
  auto shared = std::make_shared<const ChatTemplate>(std::move(*parsed));
  return ChatPrompt(
      [shared](const nlohmann::json& messages, bool add_generation_prompt) {
        nlohmann::json ctx;
        ctx["messages"] = messages;
        ctx["add_generation_prompt"] = add_generation_prompt;
        return shared->render(ctx);
      },
      "chatml");
}

bool refusal(const Status& s) {
  return s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kFailedPrecondition;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ModelConfig& config = fuzz_model_config();
  static const ChatPrompt with_template = chatml();
  static const ChatPrompt without_template;
  v1::GenerateRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  // The first byte picks whether the server has a tokenizer (bit 0) and a
  // chat template (bit 2).
  const Tokenizer* tokenizer = size > 0 && (data[0] & 1) ? fuzz_tokenizer() : nullptr;
  const ChatPrompt& chat = size > 0 && (data[0] & 4) ? with_template : without_template;
  GenerationInput in;
  Status s = grpc_request_to_input(req, chat, &in);
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
