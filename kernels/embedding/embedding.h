// Embedding lookup: out[t, :] = table[ids[t], :].
#pragma once

#include <cstdint>

#include "common/status.h"

namespace loraserve::kernels {

struct EmbeddingParams {
  const float* table = nullptr;  // [vocab, hidden]
  const int32_t* ids = nullptr;  // [num_tokens]
  float* out = nullptr;          // [num_tokens, hidden]
  int64_t num_tokens = 0;
  int64_t hidden = 0;
  int64_t vocab = 0;
};

// CPU reference. INVALID_ARGUMENT for an id outside [0, vocab).
Status embedding_ref(const EmbeddingParams& p);

}  // namespace loraserve::kernels
