// SwiGLU activation of the Llama MLP: out = silu(gate) * up.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace loraserve::kernels {

struct SiluMulParams {
  const float* gate = nullptr;  // [num_tokens, inter]
  const float* up = nullptr;    // [num_tokens, inter]
  float* out = nullptr;         // [num_tokens, inter]; may alias gate or up
  int64_t num_tokens = 0;
  int64_t inter = 0;
};

Status silu_mul_ref(const SiluMulParams& p);

}  // namespace loraserve::kernels

#ifdef LORASERVE_WITH_CUDA
#include <cuda_runtime.h>
namespace loraserve::kernels {
// Device pointers; asynchronous on `stream`. bf16 I/O (uint16_t bit
// patterns), fp32 math.
struct SiluMulBf16Params {
  const uint16_t* gate = nullptr;  // [num_tokens, inter]
  const uint16_t* up = nullptr;    // [num_tokens, inter]
  uint16_t* out = nullptr;         // [num_tokens, inter]; may alias gate or up
  int64_t num_tokens = 0;
  int64_t inter = 0;
};
Status launch_silu_mul_bf16(const SiluMulBf16Params& p, cudaStream_t stream);
}  // namespace loraserve::kernels
#endif
