// Rotary position embedding, Hugging Face Llama convention ("rotate_half":
// element i pairs with element i + head_dim/2, not interleaved pairs), with
// the Llama 3 frequency scaling.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace loraserve::kernels {

// `rope_scaling` of type "llama3" in config.json.
struct Llama3RopeScaling {
  float factor = 8.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position_embeddings = 8192;
};

// inv_freq[i] = 1 / theta^(2i/head_dim), i < head_dim/2, then Llama 3
// scaling when `scaling` is non-null (exactly as transformers'
// _compute_llama3_parameters). Computed once per model.
std::vector<float> rope_inv_freq(int64_t head_dim, double theta,
                                 const Llama3RopeScaling* scaling);

struct RopeParams {
  float* q = nullptr;                // [num_tokens, num_q_heads * head_dim], in place
  float* k = nullptr;                // [num_tokens, num_kv_heads * head_dim], in place
  const int32_t* positions = nullptr;  // [num_tokens]
  const float* inv_freq = nullptr;   // [head_dim / 2]
  int64_t num_tokens = 0;
  int64_t num_q_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // even
};

// For each head and i < d/2 with angle = pos * inv_freq[i] (fp32, as HF):
//   out[i]       = x[i] cos - x[i + d/2] sin
//   out[i + d/2] = x[i + d/2] cos + x[i] sin
Status rope_ref(const RopeParams& p);

}  // namespace loraserve::kernels

#ifdef LORASERVE_WITH_CUDA
#include <cuda_runtime.h>
namespace loraserve::kernels {
// bf16 q/k in place (uint16_t bit patterns); angles, cos and sin in fp32
// exactly as rope_ref. All pointers are device pointers. Positions are not
// checked on the device (the cuda backend validates the plan on the host).
struct RopeBf16Params {
  uint16_t* q = nullptr;               // [num_tokens, num_q_heads * head_dim]
  uint16_t* k = nullptr;               // [num_tokens, num_kv_heads * head_dim]
  const int32_t* positions = nullptr;  // [num_tokens]
  const float* inv_freq = nullptr;     // [head_dim / 2]
  int64_t num_tokens = 0;
  int64_t num_q_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // even
};
Status launch_rope_bf16(const RopeBf16Params& p, cudaStream_t stream);
}  // namespace loraserve::kernels
#endif
