#include "tokenizer/chat_template_source.h"

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "tokenizer/tokenizer_impl.h"

namespace loraserve {

namespace {

using json = nlohmann::json;

// bos_token / eos_token as the tokenizer reads them; "" when absent.
std::string token_string(const json& config, const char* key) {
  if (!config.contains(key)) return "";
  return tokenizer_internal::token_content(config[key]).value_or("");
}

// tokenizer_config.json's chat_template: a string, or [{name, template}].
StatusOr<std::string> config_template(const json& value, const std::string& where) {
  if (value.is_null()) return std::string();
  if (value.is_string()) return value.get<std::string>();
  if (!value.is_array()) return invalid_argument(where + ": chat_template is neither a string nor a list");
  for (const json& entry : value) {
    if (entry.is_object() && entry.value("name", "") == "default") {
      if (!entry.contains("template") || !entry["template"].is_string()) {
        return invalid_argument(where + ": the \"default\" chat_template has no template string");
      }
      return entry["template"].get<std::string>();
    }
  }
  return invalid_argument(where + ": chat_template lists no template named \"default\"");
}

}  // namespace

StatusOr<ChatTemplateSource> find_chat_template(const std::string& model_dir,
                                                const std::string& override_path) {
  ChatTemplateSource out;
  const std::string config_path = model_dir + "/tokenizer_config.json";
  json config = json::object();
  if (file_exists(config_path)) {
    LS_ASSIGN_OR_RETURN(std::string text, read_file(config_path));
    config = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return invalid_argument(config_path + ": not a JSON object");
    }
    out.bos_token = token_string(config, "bos_token");
    out.eos_token = token_string(config, "eos_token");
  }
  if (!override_path.empty()) {
    auto text = read_file(override_path);
    if (!text.ok()) return text.status().with_context("--chat-template");
    out.text = std::move(*text);
    out.origin = override_path;
    return out;
  }
  const std::string jinja_path = model_dir + "/chat_template.jinja";
  if (file_exists(jinja_path)) {
    LS_ASSIGN_OR_RETURN(out.text, read_file(jinja_path));
    out.origin = jinja_path;
    return out;
  }
  if (config.contains("chat_template")) {
    LS_ASSIGN_OR_RETURN(out.text, config_template(config["chat_template"], config_path));
    if (!out.text.empty()) out.origin = config_path + " chat_template";
  }
  return out;
}

}  // namespace loraserve
