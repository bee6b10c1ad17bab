// Qwen3's per-head RMSNorm of the queries and keys (q_norm, k_norm):
// applied after the q/k projections (and their LoRA deltas) and before
// RoPE, to each head_dim slice of every token, with one weight vector
// [head_dim] for all query heads and one for all key heads. The operation is
// HF's Qwen3RMSNorm, which is LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) in
// fp32, then * weight, over rows of head_dim.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace loraserve::kernels {

struct QkNormParams {
  float* q = nullptr;               // [num_tokens, num_q_heads * head_dim], in place
  float* k = nullptr;               // [num_tokens, num_kv_heads * head_dim], in place
  const float* q_weight = nullptr;  // [head_dim]
  const float* k_weight = nullptr;  // [head_dim]
  int64_t num_tokens = 0;
  int64_t num_q_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  float eps = 1e-6f;
};

// rmsnorm_ref over the [num_tokens * num_q_heads, head_dim] rows of q and
// the [num_tokens * num_kv_heads, head_dim] rows of k.
Status qk_norm_ref(const QkNormParams& p);

}  // namespace loraserve::kernels

#ifdef LORASERVE_WITH_CUDA
#include <cuda_runtime.h>
namespace loraserve::kernels {
// Device pointers; asynchronous on `stream`. bf16 in place (uint16_t bit
// patterns), fp32 math, out = bf16(weight * bf16(x * inv_rms)) as the bf16
// rmsnorm kernel and HF. head_dim <= 1024.
struct QkNormBf16Params {
  uint16_t* q = nullptr;               // [num_tokens, num_q_heads * head_dim]
  uint16_t* k = nullptr;               // [num_tokens, num_kv_heads * head_dim]
  const uint16_t* q_weight = nullptr;  // [head_dim]
  const uint16_t* k_weight = nullptr;  // [head_dim]
  int64_t num_tokens = 0;
  int64_t num_q_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  float eps = 1e-6f;
};
Status launch_qk_norm_bf16(const QkNormBf16Params& p, cudaStream_t stream);
}  // namespace loraserve::kernels
#endif
