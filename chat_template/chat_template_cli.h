// `loraserve chat-template --template FILE --context CONTEXT.json`: renders a
// chat template with a JSON context and prints the text byte for byte (no
// trailing newline added). A template error or raise_exception() prints the
// message on stderr and returns 1; unreadable files return 2.
#pragma once

#include <string>

namespace loraserve {

int run_chat_template_cli(const std::string& template_path, const std::string& context_path);

}  // namespace loraserve
