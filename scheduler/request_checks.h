// The checks a request's parameters pass before it is queued, against the
// model and the scheduler's limits. Pure (no scheduler state), so that the
// request fuzzers (tests/fuzz) run exactly what the server runs without an
// engine.
#pragma once

#include <cstdint>

#include "checkpoint/model_config.h"
#include "common/status.h"
#include "scheduler/request.h"

namespace loraserve {

// INVALID_ARGUMENT naming the field: an empty prompt, ids outside the
// vocabulary, max_new_tokens outside [1, max_new_tokens_limit] (0 means
// default_max_new_tokens), prompt + new tokens beyond the context, sampling
// values out of range. Fills in the defaults (max_new_tokens, top_p 0 = off,
// the model's EOS).
Status check_request_params(const ModelConfig& c, int32_t default_max_new_tokens,
                            int32_t max_new_tokens_limit, GenerationParams* params);

}  // namespace loraserve
