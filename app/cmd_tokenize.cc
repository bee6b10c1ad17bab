// `loraserve tokenize` and `loraserve detokenize`: the tokenizer from the
// command line, for scripts and for checking against other implementations.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/commands.h"
#include "common/file_util.h"
#include "tokenizer/tokenizer.h"

namespace loraserve::cli {

namespace {

std::shared_ptr<const Tokenizer> load_or_report(const std::string& path) {
  auto tok = Tokenizer::load(path);
  if (!tok.ok()) {
    std::fprintf(stderr, "error: %s\n", tok.status().to_string().c_str());
    return nullptr;
  }
  return *tok;
}

}  // namespace

void add_tokenize_command(CLI::App& app, Runner* runner) {
  struct Flags {
    std::string tokenizer, text, file;
    bool add_special = false, json = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Text to token ids with a HF tokenizer.json");
  cmd->add_option("--tokenizer", flags->tokenizer, "tokenizer.json (tokenizer_config.json beside it is read too)")
      ->required();
  auto* text = cmd->add_option("--text", flags->text, "Text to encode");
  auto* file = cmd->add_option("--file", flags->file, "Encode this file's contents");
  text->excludes(file);
  cmd->add_flag("--add-special", flags->add_special, "Add bos/eos as the tokenizer's template says");
  cmd->add_flag("--json", flags->json, "Print {\"ids\":[...]} (default: ids separated by commas)");
  cmd->callback([flags, runner, text, file]() {
    *runner = [flags, text, file]() -> int {
      if (text->count() == 0 && file->count() == 0) {
        std::fprintf(stderr, "error: give --text or --file\n");
        return 2;
      }
      auto tok = load_or_report(flags->tokenizer);
      if (!tok) return 1;
      std::string input = flags->text;
      if (file->count() > 0) {
        StatusOr<std::string> text = read_file(flags->file);
        if (!text.ok()) {
          std::fprintf(stderr, "error: %s\n", text.status().message().c_str());
          return 1;
        }
        input = std::move(*text);
      }
      auto ids = tok->encode(input, flags->add_special);
      if (!ids.ok()) {
        std::fprintf(stderr, "error: %s\n", ids.status().to_string().c_str());
        return 1;
      }
      if (flags->json) {
        std::printf("%s\n", nlohmann::json{{"ids", *ids}}.dump().c_str());
      } else {
        std::string line;
        for (size_t i = 0; i < ids->size(); ++i) {
          if (i) line += ',';
          line += std::to_string((*ids)[i]);
        }
        std::printf("%s\n", line.c_str());
      }
      return 0;
    };
  });
}

void add_detokenize_command(CLI::App& app, Runner* runner) {
  struct Flags {
    std::string tokenizer;
    std::vector<int64_t> ids;
    bool skip_special = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand("detokenize", "Token ids to text with a HF tokenizer.json");
  cmd->add_option("--tokenizer", flags->tokenizer, "tokenizer.json")->required();
  cmd->add_option("--ids", flags->ids, "Token ids, comma separated")->delimiter(',')->required();
  cmd->add_flag("--skip-special", flags->skip_special, "Drop special tokens (bos, eos, ...)");
  cmd->callback([flags, runner]() {
    *runner = [flags]() -> int {
      auto tok = load_or_report(flags->tokenizer);
      if (!tok) return 1;
      std::vector<int32_t> ids;
      for (int64_t id : flags->ids) {
        if (id < 0 || id > INT32_MAX || !tok->is_valid_id(static_cast<int32_t>(id))) {
          std::fprintf(stderr, "error: id %lld is not in the vocabulary\n",
                       static_cast<long long>(id));
          return 1;
        }
        ids.push_back(static_cast<int32_t>(id));
      }
      DecodeOptions opts;
      opts.skip_special_tokens = flags->skip_special;
      const std::string text = tok->decode(ids, opts);
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fputc('\n', stdout);
      return 0;
    };
  });
}

}  // namespace loraserve::cli
