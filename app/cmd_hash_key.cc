// `loraserve hash-key`: the salted hash of an API key, for a --tenants file.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "app/commands.h"
#include "server/tenant_config.h"

namespace loraserve::cli {

void add_hash_key_command(CLI::App& app, Runner* runner) {
  auto key = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "hash-key", "Print the salted hash of an API key for a --tenants file (key from stdin if omitted)");
  cmd->add_option("--key", *key, "The API key (prefer stdin: keys in argv show up in ps)");
  cmd->callback([key, runner]() {
    *runner = [key]() -> int {
      std::string k = *key;
      if (k.empty() && !std::getline(std::cin, k)) {
        std::fprintf(stderr, "error: no key given\n");
        return 1;
      }
      if (k.size() < 16) {
        std::fprintf(stderr, "error: API keys must be at least 16 characters\n");
        return 1;
      }
      std::printf("%s\n", hash_api_key(k).c_str());
      return 0;
    };
  });
}

}  // namespace loraserve::cli
