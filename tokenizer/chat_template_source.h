// Where a model's chat template comes from, in the order Hugging Face and
// vLLM use: an explicit file (--chat-template) > the model folder's
// chat_template.jinja > tokenizer_config.json's `chat_template` (a string,
// or the list form [{name, template}] of which "default" is used). The
// bos/eos token strings the template may print come from tokenizer_config.
#pragma once

#include <string>

#include "common/status.h"

namespace loraserve {

struct ChatTemplateSource {
  std::string text;    // the Jinja source; empty when the model has none
  std::string origin;  // where it was read, for logs and error messages
  std::string bos_token;
  std::string eos_token;
};

// `override_path` may be empty. A model without any template is not an
// error (text stays empty); an unreadable override, malformed
// tokenizer_config.json or a list form without "default" is.
StatusOr<ChatTemplateSource> find_chat_template(const std::string& model_dir,
                                                const std::string& override_path);

}  // namespace loraserve
