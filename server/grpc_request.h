// A gRPC GenerateRequest turned into the transport-neutral GenerationInput.
// No server state beyond the chat template, so tests/fuzz/grpc_request_fuzz.cc
// runs it on arbitrary wire bytes, then the checks the server runs after it.
#pragma once

#include "common/status.h"
#include "proto/loraserve.pb.h"
#include "server/chat_prompt.h"
#include "server/generation.h"

namespace loraserve {

// INVALID_ARGUMENT for fields that cannot even be represented (more than one
// prompt form, no prompt, ids beyond int32) and for chats the template
// refuses; to_generation_params and the scheduler's checks do the rest.
// `messages` go through `chat`, as HTTP chats do.
Status grpc_request_to_input(const v1::GenerateRequest& req, const ChatPrompt& chat,
                             GenerationInput* in);

}  // namespace loraserve
