// Attention for isolated tokens (decode): see section 2 of the design note
// in attention_bf16.cu.
#include <cmath>

#include "kernels/attention/attention_bf16_common.cuh"

namespace loraserve::kernels::attention_detail {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxR = kMaxHeadDim / 32;

// One block per (token, q head); blocks of linked tokens return at once.
__global__ void __launch_bounds__(kWarps * 32)
attention_bf16_kernel(const uint16_t* q, uint16_t* out, const int32_t* __restrict__ token_seq,
                      const int32_t* __restrict__ positions, int64_t num_tokens,
                      int32_t num_q_heads, int32_t group, int32_t head_dim, float scale,
                      PagedKvViewBf16 kv) {
  __shared__ float s_m[kWarps];
  __shared__ float s_l[kWarps];
  __shared__ float s_acc[kWarps][kMaxHeadDim];

  const int64_t t = blockIdx.x;
  const int32_t seq = token_seq[t];
  const int32_t last = positions[t];
  // Part of a run: the tile kernel owns it.
  if ((t > 0 && linked(token_seq[t - 1], positions[t - 1], seq, last)) ||
      (t + 1 < num_tokens && linked(seq, last, token_seq[t + 1], positions[t + 1]))) {
    return;
  }
  const int32_t h = blockIdx.y;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t q_off = (t * num_q_heads + h) * head_dim;
  const int64_t kv_off = static_cast<int64_t>(h / group) * head_dim;

  float qr[kMaxR];
  float acc[kMaxR];
#pragma unroll
  for (int r = 0; r < kMaxR; ++r) {
    const int d = lane + 32 * r;
    qr[r] = d < head_dim ? cuda::ld_bf16(q + q_off + d) * scale : 0.0f;
    acc[r] = 0.0f;
  }
  float m = -INFINITY;
  float l = 0.0f;
  for (int32_t j = warp; j <= last; j += kWarps) {
    const uint16_t* page = page_base(kv, seq, j);
    const int64_t slot = j % kv.page_tokens;
    const uint16_t* krow = page + slot * kv.kv_dim + kv_off;
    const uint16_t* vrow = page + (static_cast<int64_t>(kv.page_tokens) + slot) * kv.kv_dim + kv_off;
    float s = 0.0f;
#pragma unroll
    for (int r = 0; r < kMaxR; ++r) {
      const int d = lane + 32 * r;
      if (d < head_dim) s += qr[r] * cuda::ld_bf16(krow + d);
    }
    s = cuda::warp_sum(s);
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);  // m = -inf the first time: 0
    const float p = expf(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int r = 0; r < kMaxR; ++r) {
      const int d = lane + 32 * r;
      if (d < head_dim) acc[r] = acc[r] * corr + p * cuda::ld_bf16(vrow + d);
    }
    m = m_new;
  }
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
#pragma unroll
  for (int r = 0; r < kMaxR; ++r) {
    const int d = lane + 32 * r;
    if (d < head_dim) s_acc[warp][d] = acc[r];
  }
  __syncthreads();
  // Warp 0 always saw position 0, so the global max is finite.
  float gm = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) gm = fmaxf(gm, s_m[w]);
  float f[kWarps];
  float denom = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    f[w] = s_m[w] == -INFINITY ? 0.0f : expf(s_m[w] - gm);
    denom += s_l[w] * f[w];
  }
  const float inv = 1.0f / denom;
  for (int d = threadIdx.x; d < head_dim; d += kWarps * 32) {
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += s_acc[w][d] * f[w];
    cuda::st_bf16(out + q_off + d, o * inv);
  }
}

}  // namespace

Status launch_attention_decode(const AttentionBf16Params& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.num_tokens), static_cast<unsigned>(p.num_q_heads));
  LS_LAUNCH(attention_bf16_kernel, grid, kWarps * 32, 0, stream)(
      p.q, p.out, p.token_seq, p.positions, p.num_tokens, static_cast<int32_t>(p.num_q_heads),
      static_cast<int32_t>(p.num_q_heads / p.num_kv_heads), static_cast<int32_t>(p.head_dim),
      p.scale, p.kv);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels::attention_detail
