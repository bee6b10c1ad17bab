// Small gRPC helpers both clients (lora-cli, lora-bench) use.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>

namespace loraserve::clients {

// "NOT_FOUND" for grpc::StatusCode::NOT_FOUND, "UNKNOWN_CODE" for others.
const char* status_code_name(grpc::StatusCode code);

// Sends `key` as `authorization: Bearer <key>` (servers with --tenants);
// nothing when it is empty.
void add_api_key(grpc::ClientContext* ctx, const std::string& key);

}  // namespace loraserve::clients
