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
  clients::add_api_key(ctx, opts.api_key);
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
