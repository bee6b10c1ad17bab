// libFuzzer target for the OpenAI frontend's request bodies
// (server/http/openai_request.h): the body as the session hands it over
// (JSON parsed without exceptions), through parse_completion_request or
// parse_chat_request (the first byte picks), then for a completion what
// the server runs before queueing (server/generation_params.h with a real
// tokenizer, scheduler/request_checks.h against a tiny model), and the
// error body a refusal is sent as. Checks: never a crash, hang, UB or an
// escaping exception; a refusal is INVALID_ARGUMENT or UNIMPLEMENTED (the
// parsers), or FAILED_PRECONDITION (no tokenizer), and its error body is
// valid JSON; a chat request's messages are all {role, content} strings.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "scheduler/request_checks.h"
#include "server/generation_params.h"
#include "server/http/error_body.h"
#include "server/http/openai_request.h"
#include "tests/fuzz/request_fixture.h"

using namespace loraserve;
using nlohmann::json;

namespace {

void check_refusal(const Status& s, const std::string& param) {
  if (s.code() != StatusCode::kInvalidArgument && s.code() != StatusCode::kUnimplemented &&
      s.code() != StatusCode::kFailedPrecondition) {
    std::abort();
  }
  const json body = json::parse(http::status_error_body(s, param), nullptr, false);
  if (body.is_discarded() || !body.contains("error")) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ModelConfig& config = fuzz_model_config();
  if (size == 0) return 0;
  const bool chat = data[0] & 1;
  const json body = json::parse(data + 1, data + size, nullptr, false);
  if (body.is_discarded()) return 0;
  http::OpenAiRequest req;
  http::RequestError error;
  const bool ok = chat ? http::parse_chat_request(body, &req, &error)
                       : http::parse_completion_request(body, &req, &error);
  if (!ok) {
    if (error.status.ok()) std::abort();
    check_refusal(error.status, error.param);
    return 0;
  }
  if (chat) {
    if (!req.messages.is_array() || req.messages.empty()) std::abort();
    for (const json& m : req.messages) {
      if (!m.is_object() || !m["role"].is_string() || !m["content"].is_string()) std::abort();
    }
    (void)req.messages.dump();  // what the chat template renderer is handed
    return 0;
  }
  GenerationParams p;
  Status s = to_generation_params(req.input, fuzz_tokenizer(), &p);
  if (s.ok()) s = check_request_params(config, 16, 4096, &p);
  if (!s.ok()) check_refusal(s, "");
  return 0;
}
