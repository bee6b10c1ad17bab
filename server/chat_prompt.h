// ChatPrompt: a chat (messages of {role, content}) made into a generation
// prompt by the model's chat template, written once for every transport:
// HTTP /v1/chat/completions and gRPC Generate's `messages` both call
// apply(), so one chat gives the same prompt tokens over either.
//
// The template comes from --chat-template > the model's chat_template.jinja
// > tokenizer_config.json (tokenizer/chat_template_source.h) and is rendered
// with the variables transformers' apply_chat_template passes. The rendered
// text is tokenized without adding special tokens: the template writes its
// own BOS, and a second one would change what the model sees.
//
// Errors are INVALID_ARGUMENT (mapped to a gRPC code or an HTTP 400 by each
// transport's table): a bad role, a model without a chat template (the
// message names what was looked for), or the template's own
// raise_exception(msg), whose `msg` is kept. Thread-safe (immutable).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "server/generation.h"

namespace loraserve {

// Renders `messages` (a list of {role, content} with string contents) to
// prompt text. The product's renders the Jinja template; tests may plug in
// their own.
using ChatRenderer = std::function<StatusOr<std::string>(const nlohmann::json& messages,
                                                          bool add_generation_prompt)>;

// The roles a chat message may have: system, user, assistant.
bool is_chat_role(const std::string& role);

class ChatPrompt {
 public:
  // No template: every chat is refused.
  ChatPrompt() = default;
  ChatPrompt(ChatRenderer render, std::string origin)
      : render_(std::move(render)), origin_(std::move(origin)) {}

  // The model's template (`override_path` may be empty). A model without
  // one is not an error: the result refuses chats. An unreadable or
  // unparsable template is (the server should not start with it).
  static StatusOr<ChatPrompt> load(const std::string& model_dir, const std::string& override_path);

  bool has_template() const { return static_cast<bool>(render_); }
  // Where the template was read ("" without one), for logs.
  const std::string& origin() const { return origin_; }

  // The prompt text for `messages`; see the errors above.
  StatusOr<std::string> render(const nlohmann::json& messages, bool add_generation_prompt) const;
  // Renders into `input` as its text prompt, tokenized without special tokens.
  Status apply(const nlohmann::json& messages, bool add_generation_prompt,
               GenerationInput* input) const;

 private:
  ChatRenderer render_;
  std::string origin_;
};

}  // namespace loraserve
