// The bodies of POST /v1/completions and /v1/chat/completions, checked and
// turned into a GenerationInput. Pure functions of the JSON (no server
// state), unit-tested on their own. Unknown fields are ignored, as OpenAI's
// own clients send ones a server may not know; fields loraserve cannot
// honour (n > 1, echo, best_of, penalties, logit_bias) are refused with a
// 400 naming them rather than silently dropped.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "server/generation.h"

namespace loraserve::http {

enum class ApiKind { kCompletion, kChat };

struct OpenAiRequest {
  ApiKind kind = ApiKind::kCompletion;
  std::string model;      // as sent; "" when absent
  GenerationInput input;  // chat: the prompt is set after rendering
  // Chat: the messages with every content normalised to one string.
  nlohmann::json messages;
  bool add_generation_prompt = true;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Completions: `logprobs` (top-N wanted; loraserve reports the chosen
  // token's). Chat: `logprobs: true` (+ `top_logprobs`). -1 = not asked.
  int logprobs = -1;
  // vLLM's return_tokens_as_token_ids: logprob tokens as "token_id:N".
  bool tokens_as_ids = false;
};

// The offending field for the error's `param` ("" = none) beside the status.
struct RequestError {
  Status status;
  std::string param;
};

// `body` is the parsed JSON. On failure returns false and fills *error
// (INVALID_ARGUMENT, or UNIMPLEMENTED for features not built yet).
bool parse_completion_request(const nlohmann::json& body, OpenAiRequest* out, RequestError* error);
bool parse_chat_request(const nlohmann::json& body, OpenAiRequest* out, RequestError* error);

}  // namespace loraserve::http
