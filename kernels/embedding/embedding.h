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

#ifdef LORASERVE_WITH_CUDA
#include <cuda_runtime.h>
namespace loraserve::kernels {
// bf16 rows (uint16_t bit patterns) on the device. Also used to gather rows
// of any bf16 matrix (table = the matrix, ids = the rows to take). Ids are
// NOT checked on the device: callers validate them on the host (the cuda
// backend checks the plan's ids in begin_step); an id outside [0, vocab)
// writes a zero row instead of reading out of bounds.
struct EmbeddingBf16Params {
  const uint16_t* table = nullptr;  // [vocab, hidden] bf16
  const int32_t* ids = nullptr;     // [num_tokens] device
  uint16_t* out = nullptr;          // [num_tokens, hidden] bf16
  int64_t num_tokens = 0;
  int64_t hidden = 0;
  int64_t vocab = 0;
};
Status launch_embedding_bf16(const EmbeddingBf16Params& p, cudaStream_t stream);
}  // namespace loraserve::kernels
#endif
