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

// The metadata key that names a call's adapter, so that a proxy in front of
// several servers (nginx hashing on it) can send each adapter's requests to
// the replica that already holds it: the server itself does not read it.
inline constexpr const char* kAdapterMetadataKey = "x-lora-adapter";

// Sends `adapter_id` as `x-lora-adapter` on calls that name an adapter
// (Generate, Load/Upload/UnloadAdapter); nothing for the base model (""),
// nor for an id gRPC could not carry in a header (the server refuses such
// ids anyway, with a clearer message than a failed call would give).
void add_adapter_routing(grpc::ClientContext* ctx, const std::string& adapter_id);

}  // namespace loraserve::clients
