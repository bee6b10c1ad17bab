// Shared plumbing of lora-cli: connection options, per-call contexts, and the
// one place a gRPC status becomes an error line and an exit code.
#pragma once

#include <grpcpp/grpcpp.h>

#include "clients/common/grpc_util.h"

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>

namespace loraserve::client {

// Process exit codes. Usage errors (bad flags) exit kExitUsage.
constexpr int kExitOk = 0;
constexpr int kExitError = 1;  // the server (or the network) said no
constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = 130;  // Ctrl-C during generate (128 + SIGINT)

// Top-level flags, read by every command when it runs (after parsing).
struct GlobalOptions {
  std::string addr = "127.0.0.1:50051";
  double timeout_s = 300.0;  // deadline of each call
  std::string api_key;       // sent as `authorization: Bearer <key>` ($LORASERVE_API_KEY)
  std::string tls_ca;        // PEM CA bundle: connect with TLS
  std::string tls_cert;      // PEM client certificate (servers with --tls-client-ca)
  std::string tls_key;
};

// The chosen subcommand's action; set by the subcommand's callback.
using Runner = std::function<int()>;

// A channel to `opts.addr`: TLS when --tls-ca is given, else plaintext.
std::shared_ptr<grpc::Channel> make_channel(const GlobalOptions& opts);

// Sets the per-call deadline from `opts.timeout_s` on `ctx`, and the API
// key when there is one.
void set_deadline(const GlobalOptions& opts, grpc::ClientContext* ctx);

using clients::status_code_name;  // "NOT_FOUND", "UNAVAILABLE", ...

// Prints `error: CODE_NAME: message` to stderr and returns kExitError.
int report_error(const grpc::Status& status);
// Prints `error: message` to stderr and returns kExitError.
int report_error(const std::string& message);

// 1536 -> "1.5 KiB".
std::string format_bytes(uint64_t bytes);

// One registration function per command group (see cmd_*.cc).
void add_generate_command(CLI::App& app, const GlobalOptions* opts, Runner* runner);
void add_adapter_commands(CLI::App& app, const GlobalOptions* opts, Runner* runner);
void add_stats_command(CLI::App& app, const GlobalOptions* opts, Runner* runner);
void add_health_command(CLI::App& app, const GlobalOptions* opts, Runner* runner);

}  // namespace loraserve::client
