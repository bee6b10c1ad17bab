// loraserve: multi-tenant LoRA inference server. Subcommands:
//   synth     write a synthetic Llama model and PEFT adapters
//   generate  run the engine offline on one prompt
//   serve     the gRPC server
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include "app/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"loraserve: serve one Llama base model with thousands of LoRA adapters"};
  app.require_subcommand(1);
  loraserve::cli::Runner runner;
  loraserve::cli::add_synth_command(app, &runner);
  loraserve::cli::add_generate_command(app, &runner);
  loraserve::cli::add_serve_command(app, &runner);
  loraserve::cli::add_hash_key_command(app, &runner);
  loraserve::cli::add_tokenize_command(app, &runner);
  loraserve::cli::add_detokenize_command(app, &runner);
  loraserve::cli::add_chat_template_command(app, &runner);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_default_logger(spdlog::stderr_color_mt("loraserve"));
  return runner ? runner() : 2;
}
