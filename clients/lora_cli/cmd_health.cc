// lora-cli health: grpc.health.v1.Health/Check. Exit 0 only when SERVING.
#include <cstdio>

#include "clients/lora_cli/client.h"
#include "proto/health.grpc.pb.h"

namespace loraserve::client {
namespace {

int run_health(const GlobalOptions& opts, const std::string& service) {
  using grpc::health::v1::HealthCheckResponse;
  auto stub = grpc::health::v1::Health::NewStub(make_channel(opts));
  grpc::ClientContext ctx;
  set_deadline(opts, &ctx);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  grpc::Status status = stub->Check(&ctx, request, &response);
  if (!status.ok()) return report_error(status);
  std::printf("%s\n", HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  return response.status() == HealthCheckResponse::SERVING ? kExitOk : kExitError;
}

}  // namespace

void add_health_command(CLI::App& app, const GlobalOptions* opts, Runner* runner) {
  auto service = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("health", "gRPC health check (exit 0 when SERVING)");
  cmd->add_option("--service", *service, "service name; empty = the whole server")
      ->capture_default_str();
  cmd->callback([opts, service, runner] {
    *runner = [opts, service] { return run_health(*opts, *service); };
  });
}

}  // namespace loraserve::client
