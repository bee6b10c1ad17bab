// libFuzzer target for the chat template renderer (tokenizer/chat_template.h).
// Input: TEMPLATE [ '\0' CONTEXT_JSON ]. Without a NUL, or when the JSON is
// not an object, a fixed chat context is used. Small limits keep every run
// fast; the checks are the API's promises:
//   - parse and render never crash, hang or throw;
//   - failures are kInvalidArgument (syntax, template errors, raise) or
//     kResourceExhausted (limits), nothing else;
//   - output is valid UTF-8 within max_output_bytes;
//   - rendering is deterministic (templates without strftime_now).
// Build and run: tests/fuzz/run_fuzz.sh SECONDS BUILD_DIR chat_template_fuzz.
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "chat_template/chat_template.h"
#include "chat_template/jinja_text.h"

using loraserve::ChatTemplate;
using loraserve::ChatTemplateLimits;
using loraserve::StatusCode;

namespace {

const char kDefaultContext[] = R"({
  "messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "héllo 日本語 🙂"},
    {"role": "assistant", "content": "<think>x</think>ok", "tool_calls": [
      {"type": "function", "function": {"name": "f", "arguments": {"a": [1, 2.5, null, true]}}}]},
    {"role": "tool", "content": [{"type": "text", "text": "r"}]}
  ],
  "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
    "properties": {"a": {"type": "array", "items": {"type": "number"}}}}}}],
  "documents": null, "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"
})";

void check_failure(const loraserve::Status& s) {
  if (s.code() != StatusCode::kInvalidArgument && s.code() != StatusCode::kResourceExhausted) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::ordered_json default_context = nlohmann::ordered_json::parse(kDefaultContext);
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string source = input.substr(0, nul);
  nlohmann::ordered_json context = default_context;
  if (nul != std::string::npos) {
    auto parsed = nlohmann::ordered_json::parse(input.substr(nul + 1), nullptr, false);
    if (!parsed.is_discarded() && parsed.is_object()) context = std::move(parsed);
  }

  ChatTemplateLimits limits;
  limits.max_recursion = 16;
  limits.max_nesting = 64;
  limits.max_loop_iterations = 20000;
  limits.max_output_bytes = 64 << 10;
  limits.max_template_bytes = 16 << 10;
  limits.max_work = 300000;
  auto tmpl = ChatTemplate::parse(source, limits);
  if (!tmpl.ok()) {
    check_failure(tmpl.status());
    return 0;
  }
  auto out = tmpl->render(context);
  if (!out.ok()) {
    check_failure(out.status());
    return 0;
  }
  if (out->size() > limits.max_output_bytes || !loraserve::jinja::utf8_is_valid(*out)) std::abort();
  if (source.find("strftime") == std::string::npos) {
    auto again = tmpl->render(context);
    if (!again.ok() || *again != *out) std::abort();
  }
  return 0;
}
