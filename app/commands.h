// Subcommands of the `loraserve` binary. Each registers its flags on the
// CLI11 app and returns the function that runs it (exit code).
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace loraserve::cli {

using Runner = std::function<int()>;

// `loraserve synth`: writes a synthetic HF model and PEFT adapters.
void add_synth_command(CLI::App& app, Runner* runner);
// `loraserve generate`: offline generation with one model and adapter.
void add_generate_command(CLI::App& app, Runner* runner);
// `loraserve serve`: the gRPC server.
void add_serve_command(CLI::App& app, Runner* runner);
// `loraserve hash-key`: the salted hash of an API key for --tenants.
void add_hash_key_command(CLI::App& app, Runner* runner);
// `loraserve tokenize` / `loraserve detokenize`: a tokenizer.json from the shell.
void add_tokenize_command(CLI::App& app, Runner* runner);
void add_detokenize_command(CLI::App& app, Runner* runner);
// `loraserve chat-template`: render a chat template with a JSON context.
void add_chat_template_command(CLI::App& app, Runner* runner);

}  // namespace loraserve::cli
