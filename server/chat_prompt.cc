#include "server/chat_prompt.h"

#include <memory>

#include "chat_template/chat_template.h"
#include "tokenizer/chat_template_source.h"

namespace loraserve {

namespace {

// Each message is {role, content} with a known role and string content.
// Transports check their own wire shapes first; this is the one rule both
// share, so a chat refused over one is refused over the other.
Status validate_messages(const nlohmann::json& messages) {
  if (!messages.is_array() || messages.empty()) {
    return invalid_argument("'messages' must be a non-empty list");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const nlohmann::json& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return invalid_argument(where + " must be an object");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string() || role->get<std::string>().empty()) {
      return invalid_argument(where + ".role is required");
    }
    if (!is_chat_role(role->get<std::string>())) {
      return invalid_argument(where + ".role '" + role->get<std::string>() +
                              "' is not supported (system, user, assistant)");
    }
    auto content = m.find("content");
    if (content == m.end() || !content->is_string()) {
      return invalid_argument(where + ".content must be a string");
    }
  }
  return ok_status();
}

}  // namespace

bool is_chat_role(const std::string& role) {
  return role == "system" || role == "user" || role == "assistant";
}

StatusOr<ChatPrompt> ChatPrompt::load(const std::string& model_dir,
                                      const std::string& override_path) {
  auto source = find_chat_template(model_dir, override_path);
  if (!source.ok()) return source.status();
  if (source->text.empty()) return ChatPrompt();
  auto tmpl = ChatTemplate::parse(source->text);
  if (!tmpl.ok()) return tmpl.status().with_context("chat template " + source->origin);
  auto shared = std::make_shared<const ChatTemplate>(std::move(*tmpl));
  const std::string bos = source->bos_token, eos = source->eos_token;
  ChatRenderer render = [shared, bos, eos](const nlohmann::json& messages,
                                           bool add_generation_prompt) -> StatusOr<std::string> {
    // The variables transformers' apply_chat_template passes. Messages came
    // through a (key-sorted) json already, so an ordered_json context would
    // keep no order worth keeping.
    nlohmann::json ctx;
    ctx["messages"] = messages;
    ctx["tools"] = nullptr;
    ctx["documents"] = nullptr;
    ctx["add_generation_prompt"] = add_generation_prompt;
    ctx["bos_token"] = bos;
    ctx["eos_token"] = eos;
    return shared->render(ctx);
  };
  return ChatPrompt(std::move(render), source->origin);
}

StatusOr<std::string> ChatPrompt::render(const nlohmann::json& messages,
                                         bool add_generation_prompt) const {
  if (!render_) {
    return invalid_argument(
        "this model has no chat template (no --chat-template, no chat_template.jinja and no "
        "'chat_template' in its tokenizer_config.json): send a plain prompt instead");
  }
  LS_RETURN_IF_ERROR(validate_messages(messages));
  auto text = render_(messages, add_generation_prompt);
  if (!text.ok()) return text.status().with_context("rendering the chat template");
  return text;
}

Status ChatPrompt::apply(const nlohmann::json& messages, bool add_generation_prompt,
                         GenerationInput* input) const {
  auto text = render(messages, add_generation_prompt);
  if (!text.ok()) return text.status();
  input->has_prompt_text = true;
  input->prompt_text = std::move(*text);
  input->add_special_tokens = false;  // the template wrote any BOS itself
  input->prompt_ids.clear();
  return ok_status();
}

}  // namespace loraserve
