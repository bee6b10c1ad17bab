// The one place where loraserve Status becomes a gRPC status. Our codes
// mirror gRPC's canonical codes number for number (common/status.h).
#pragma once

#include <grpcpp/grpcpp.h>

#include "common/status.h"

namespace loraserve {

inline grpc::Status to_grpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), s.message());
}

}  // namespace loraserve
