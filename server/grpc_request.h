// A gRPC GenerateRequest turned into the transport-neutral GenerationInput.
// Pure (no server state), so tests/fuzz/grpc_request_fuzz.cc runs it on
// arbitrary wire bytes, then the checks the server runs after it.
#pragma once

#include "common/status.h"
#include "proto/loraserve.pb.h"
#include "server/generation.h"

namespace loraserve {

// INVALID_ARGUMENT for fields that cannot even be represented (both prompt
// forms, no prompt, ids beyond int32); to_generation_params and the
// scheduler's checks do the rest.
Status grpc_request_to_input(const v1::GenerateRequest& req, GenerationInput* in);

}  // namespace loraserve
