// `loraserve chat-template --template FILE --context CONTEXT.json`: prints
// the rendered chat template byte for byte (chat_template/chat_template_cli.h).
#include <memory>
#include <string>

#include "app/commands.h"
#include "chat_template/chat_template_cli.h"

namespace loraserve::cli {

void add_chat_template_command(CLI::App& app, Runner* runner) {
  struct Flags {
    std::string template_path, context_path;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "chat-template", "Render a Jinja chat template with a JSON context, as transformers does");
  cmd->add_option("--template", f->template_path, "The template (.jinja)")->required();
  cmd->add_option("--context", f->context_path,
                  "JSON object: messages, add_generation_prompt, bos_token, eos_token, tools, ...")
      ->required();
  cmd->callback([f, runner]() {
    *runner = [f]() { return run_chat_template_cli(f->template_path, f->context_path); };
  });
}

}  // namespace loraserve::cli
