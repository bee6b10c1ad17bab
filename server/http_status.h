// The one place where a loraserve Status becomes an HTTP status and an
// OpenAI error type, beside grpc_status.h for gRPC: a request refused over
// HTTP gets the code its gRPC twin would get, translated by this table
// (README.md shows it).
#pragma once

#include "common/status.h"

namespace loraserve {

struct HttpStatusMapping {
  int http_status;
  const char* error_type;  // OpenAI's `error.type`
};

inline HttpStatusMapping to_http(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return {200, ""};
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    // Corrupt adapter files are the request's fault: it named them.
    case StatusCode::kDataLoss: return {400, "invalid_request_error"};
    case StatusCode::kUnauthenticated: return {401, "authentication_error"};
    case StatusCode::kPermissionDenied: return {403, "permission_error"};
    case StatusCode::kNotFound: return {404, "not_found_error"};
    // Already loaded, adapter/base mismatch, unloading an adapter in use.
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAborted: return {409, "conflict_error"};
    // Full queue, full pool or a tenant quota.
    case StatusCode::kResourceExhausted: return {429, "rate_limit_error"};
    // Nobody reads it (the client left); nginx's code for that case.
    case StatusCode::kCancelled: return {499, "cancelled_error"};
    case StatusCode::kUnimplemented: return {501, "not_implemented_error"};
    case StatusCode::kUnavailable: return {503, "service_unavailable_error"};
    case StatusCode::kDeadlineExceeded: return {504, "timeout_error"};
    case StatusCode::kInternal:
    case StatusCode::kUnknown: break;
  }
  return {500, "server_error"};
}

}  // namespace loraserve
