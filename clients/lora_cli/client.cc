#include "clients/lora_cli/client.h"

#include <cstdlib>

#include <chrono>
#include <fstream>
#include <sstream>
#include <cstdio>
#include <iostream>

#include "clients/common/credentials.h"

namespace loraserve::client {


std::shared_ptr<grpc::Channel> make_channel(const GlobalOptions& opts) {
  std::string error;
  auto creds = clients::channel_credentials({opts.tls_ca, opts.tls_cert, opts.tls_key}, &error);
  if (!creds) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    std::exit(2);  // bad flags
  }
  return grpc::CreateChannel(opts.addr, creds);
}

void set_deadline(const GlobalOptions& opts, grpc::ClientContext* ctx) {
  const auto timeout = std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::duration<double>(opts.timeout_s));
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  if (!opts.api_key.empty()) ctx->AddMetadata("authorization", "Bearer " + opts.api_key);
}

const char* status_code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN_CODE";
  }
}

int report_error(const grpc::Status& status) {
  std::cout.flush();
  std::cerr << "error: " << status_code_name(status.error_code()) << ": " << status.error_message()
            << std::endl;
  return kExitError;
}

int report_error(const std::string& message) {
  std::cout.flush();
  std::cerr << "error: " << message << std::endl;
  return kExitError;
}

std::string format_bytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  char buf[32];
  if (unit == 0) {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f %s", value, kUnits[unit]);
  }
  return buf;
}

}  // namespace loraserve::client
