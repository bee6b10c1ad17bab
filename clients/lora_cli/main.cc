// lora-cli: command-line client of a loraserve server (proto/loraserve.proto).
//
//   lora-cli --addr 127.0.0.1:50051 generate --adapter a0 --prompt-ids 1,2,3 --max-new-tokens 16
//   lora-cli load --id a0 --path a0          lora-cli load --id a0 --upload ./a0
//   lora-cli unload --id a0                  lora-cli list [--json]
//   lora-cli stats [--json]                  lora-cli health [--service NAME]
//
// Exit codes: 0 ok, 1 the call failed (`error: CODE: message` on stderr),
// 2 usage error, 130 generate interrupted with Ctrl-C.
#include <CLI/CLI.hpp>

#include "clients/lora_cli/client.h"

int main(int argc, char** argv) {
  using namespace loraserve::client;
  CLI::App app{"lora-cli: talk to a loraserve server"};
  app.require_subcommand(1);
  app.fallthrough();  // --addr / --timeout-s may also follow the subcommand

  GlobalOptions opts;
  app.add_option("--addr", opts.addr, "server address host:port")->capture_default_str();
  app.add_option("--timeout-s", opts.timeout_s, "deadline of each call, in seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--api-key", opts.api_key, "API key (default: $LORASERVE_API_KEY)")
      ->envname("LORASERVE_API_KEY");
  app.add_option("--tls-ca", opts.tls_ca, "PEM CA bundle: connect with TLS");
  app.add_option("--tls-cert", opts.tls_cert, "PEM client certificate for mutual TLS");
  app.add_option("--tls-key", opts.tls_key, "PEM private key of --tls-cert");

  Runner runner;
  add_generate_command(app, &opts, &runner);
  add_adapter_commands(app, &opts, &runner);
  add_stats_command(app, &opts, &runner);
  add_health_command(app, &opts, &runner);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help / --version are "errors" with exit code 0.
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  return runner ? runner() : kExitUsage;
}
