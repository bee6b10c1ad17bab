#include "chat_template/chat_template_cli.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "chat_template/chat_template.h"

namespace loraserve {
namespace {

bool read_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return static_cast<bool>(in) || in.eof();
}

}  // namespace

int run_chat_template_cli(const std::string& template_path, const std::string& context_path) {
  std::string source;
  std::string context;
  if (!read_file(template_path, &source)) {
    std::fprintf(stderr, "cannot read template %s\n", template_path.c_str());
    return 2;
  }
  if (!read_file(context_path, &context)) {
    std::fprintf(stderr, "cannot read context %s\n", context_path.c_str());
    return 2;
  }
  auto tmpl = ChatTemplate::parse(source);
  if (!tmpl.ok()) {
    std::fprintf(stderr, "%s\n", tmpl.status().message().c_str());
    return 1;
  }
  auto text = tmpl->render_json_text(context);
  if (!text.ok()) {
    std::fprintf(stderr, "%s\n", text.status().message().c_str());
    return 1;
  }
  std::fwrite(text->data(), 1, text->size(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace loraserve
