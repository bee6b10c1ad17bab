// The scheduler's GenerationParams from a transport's GenerationInput: the
// checks that need no server state (one prompt form, stop strings, text
// tokenized). Split from Generator so the request fuzzers run it alone;
// the scheduler's own checks (scheduler/request_checks.h: vocabulary,
// context, sampling ranges) do the rest.
#pragma once

#include "common/status.h"
#include "scheduler/request.h"
#include "server/generation.h"
#include "tokenizer/tokenizer.h"

namespace loraserve {

// INVALID_ARGUMENT, or FAILED_PRECONDITION for text without a tokenizer
// (`tokenizer` null = token ids only). The adapter and tenant are not set.
Status to_generation_params(const GenerationInput& in, const Tokenizer* tokenizer,
                            GenerationParams* p);

}  // namespace loraserve
