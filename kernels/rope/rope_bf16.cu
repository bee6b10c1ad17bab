// CUDA rotary embedding, bf16 in place, fp32 angles (HF rotate_half): one
// block per token; threads stride over (head, i < head_dim/2) pairs of the
// q heads then the k heads. Each pair is read and written by one thread.
#include "common/cuda_check.h"
#include "kernels/cuda_util.cuh"
#include "kernels/rope/rope.h"

namespace loraserve::kernels {
namespace {

__global__ void rope_bf16_kernel(uint16_t* q, uint16_t* k, const int32_t* __restrict__ positions,
                                 const float* __restrict__ inv_freq, int64_t num_q_heads,
                                 int64_t num_kv_heads, int64_t head_dim) {
  const int64_t t = blockIdx.x;
  const int64_t half = head_dim / 2;
  const float pos = static_cast<float>(positions[t]);
  const int64_t q_pairs = num_q_heads * half;
  const int64_t total = (num_q_heads + num_kv_heads) * half;
  for (int64_t idx = threadIdx.x; idx < total; idx += blockDim.x) {
    uint16_t* base;
    int64_t h, i;
    if (idx < q_pairs) {
      h = idx / half;
      i = idx % half;
      base = q + (t * num_q_heads + h) * head_dim;
    } else {
      const int64_t j = idx - q_pairs;
      h = j / half;
      i = j % half;
      base = k + (t * num_kv_heads + h) * head_dim;
    }
    // fp32 angle, accurate sin/cos (no fast-math intrinsics), as rope_ref.
    const float angle = pos * inv_freq[i];
    float s, c;
    sincosf(angle, &s, &c);
    const float x1 = cuda::ld_bf16(base + i);
    const float x2 = cuda::ld_bf16(base + i + half);
    cuda::st_bf16(base + i, x1 * c - x2 * s);
    cuda::st_bf16(base + i + half, x2 * c + x1 * s);
  }
}

}  // namespace

Status launch_rope_bf16(const RopeBf16Params& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.num_tokens > 0x7fffffffll) return invalid_argument("rope_bf16: bad num_tokens");
  if (p.head_dim <= 0 || p.head_dim % 2 != 0 || p.num_q_heads <= 0 || p.num_kv_heads <= 0) {
    return invalid_argument("rope_bf16: bad head geometry");
  }
  if (p.num_tokens == 0) return ok_status();
  if (!p.q || !p.k || !p.positions || !p.inv_freq) return invalid_argument("rope_bf16: null pointer");
  LS_LAUNCH(rope_bf16_kernel, static_cast<unsigned>(p.num_tokens), 128, 0, stream)(
      p.q, p.k, p.positions, p.inv_freq, p.num_q_heads, p.num_kv_heads, p.head_dim);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
