// Renders Hugging Face chat templates (tokenizer_config.json's
// "chat_template") byte for byte as transformers' apply_chat_template does:
// jinja2 with trim_blocks and lstrip_blocks, the loopcontrols extension,
// {% generation %} tolerated, raise_exception() and strftime_now() globals,
// and tojson as json.dumps(ensure_ascii=False), inside jinja2's
// ImmutableSandboxedEnvironment (list.append and friends raise, range() is
// capped at 100000 items).
//
// Untrusted templates are safe to run: parsing and rendering never throw,
// never crash and never run unbounded; every limit below fails the call
// with a Status instead.
//
//   auto tmpl = ChatTemplate::parse(source);
//   if (!tmpl.ok()) return tmpl.status();
//   nlohmann::ordered_json ctx = {{"messages", messages}, {"tools", nullptr},
//                                 {"add_generation_prompt", true},
//                                 {"bos_token", "<s>"}, {"eos_token", "</s>"}};
//   auto text = tmpl->render(ctx);
//
// Rendering recurses on the native stack, bounded by the limits: at the
// defaults it needs under 1 MiB (about 3 MiB with AddressSanitizer), so run
// it on threads with the usual 8 MiB stacks.
//
// transformers passes `messages`, `tools` (None when absent), `documents`
// (None when absent), `add_generation_prompt` and the tokenizer's special
// tokens (bos_token, eos_token, ...); callers should pass the same
// variables so templates see what they see under transformers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace loraserve {

struct ChatTemplateLimits {
  int max_recursion = 64;                     // nested macro calls
  int max_nesting = 256;                      // nesting of blocks and expressions in the source
  int64_t max_loop_iterations = 1'000'000;    // all for-loop iterations of one render together
  size_t max_output_bytes = 4 << 20;          // the result, and any string built on the way
  size_t max_template_bytes = 1 << 20;        // the template source
  int64_t max_work = 20'000'000;              // evaluation steps plus bytes/elements touched
};

class ChatTemplate {
 public:
  // Syntax errors are kInvalidArgument naming the line.
  static StatusOr<ChatTemplate> parse(const std::string& source, ChatTemplateLimits limits = {});

  // `context` is a JSON object of template variables (pass a named json
  // object: a braced initializer list matches both overloads). An ordered_json keeps
  // key order as Python's json.loads does, which tojson output shows; a
  // plain nlohmann::json (sorted keys) renders tool schemas with sorted keys.
  //
  // Errors: raise_exception("msg") gives kInvalidArgument whose message is
  // exactly "msg"; exceeded limits give kResourceExhausted; other template
  // errors (undefined attribute access, type errors) kInvalidArgument
  // naming the template line.
  StatusOr<std::string> render(const nlohmann::ordered_json& context) const;
  StatusOr<std::string> render(const nlohmann::json& context) const;
  // Parses `context_json` (keeping key order) and renders.
  StatusOr<std::string> render_json_text(const std::string& context_json) const;

  const ChatTemplateLimits& limits() const;

  struct Impl;  // opaque: the parsed template

 private:
  explicit ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;  // immutable: one parsed template serves many threads
};

}  // namespace loraserve
