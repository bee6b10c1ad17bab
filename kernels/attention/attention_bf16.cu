// CUDA paged KV append and causal GQA attention, bf16 storage, fp32 math.
//
// attention: one block of kWarps warps per (token, q head). Warp w takes the
// positions j = w, w + kWarps, ... of 0..pos; inside a warp, lane l holds
// elements d = l + 32 r (r < kMaxR) of the head, so a score is one
// warp-wide sum. Each warp keeps an online softmax (running max m, sum l,
// acc[d]); the warps' states are merged through shared memory at the end.
// Correctness first: prefill re-reads K/V per (token, head), which is
// O(T^2) and fine for the sizes tested; a tiled prefill kernel comes later.
#include <cmath>

#include "common/cuda_check.h"
#include "kernels/attention/attention.h"
#include "kernels/cuda_util.cuh"

namespace loraserve::kernels {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxHeadDim = 256;
constexpr int kMaxR = kMaxHeadDim / 32;

__device__ __forceinline__ uint16_t* page_base(const PagedKvViewBf16& kv, int32_t seq, int64_t pos) {
  const int64_t row = kv.block_indptr[seq] + pos / kv.page_tokens;
  return kv.pool + static_cast<int64_t>(kv.page_ids[row * kv.num_layers + kv.layer]) * kv.page_stride;
}

// One block per token; threads copy its K and V rows into the page.
__global__ void kv_append_bf16_kernel(const uint16_t* __restrict__ k, const uint16_t* __restrict__ v,
                                      const int32_t* __restrict__ token_seq,
                                      const int32_t* __restrict__ positions, PagedKvViewBf16 kv) {
  const int64_t t = blockIdx.x;
  const int32_t seq = token_seq[t];
  const int64_t pos = positions[t];
  uint16_t* page = page_base(kv, seq, pos);
  const int64_t slot = pos % kv.page_tokens;
  uint16_t* k_dst = page + slot * kv.kv_dim;
  uint16_t* v_dst = page + (static_cast<int64_t>(kv.page_tokens) + slot) * kv.kv_dim;
  const uint16_t* k_src = k + t * kv.kv_dim;
  const uint16_t* v_src = v + t * kv.kv_dim;
  for (int i = threadIdx.x; i < kv.kv_dim; i += blockDim.x) {
    k_dst[i] = k_src[i];
    v_dst[i] = v_src[i];
  }
}

__global__ void __launch_bounds__(kWarps * 32)
attention_bf16_kernel(const uint16_t* q, uint16_t* out, const int32_t* __restrict__ token_seq,
                      const int32_t* __restrict__ positions, int32_t num_q_heads, int32_t group,
                      int32_t head_dim, float scale, PagedKvViewBf16 kv) {
  __shared__ float s_m[kWarps];
  __shared__ float s_l[kWarps];
  __shared__ float s_acc[kWarps][kMaxHeadDim];

  const int64_t t = blockIdx.x;
  const int32_t h = blockIdx.y;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int32_t seq = token_seq[t];
  const int32_t last = positions[t];
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

Status check_view(const char* op, const PagedKvViewBf16& kv) {
  if (!kv.pool || !kv.block_indptr || !kv.page_ids || kv.page_tokens <= 0 || kv.kv_dim <= 0 ||
      kv.num_layers <= 0 || kv.layer < 0 || kv.layer >= kv.num_layers || kv.num_seqs <= 0 ||
      kv.page_stride < 2 * static_cast<int64_t>(kv.page_tokens) * kv.kv_dim) {
    return invalid_argument(std::string(op) + ": bad KV view");
  }
  return ok_status();
}

}  // namespace

Status launch_kv_append_bf16(const KvAppendBf16Params& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.num_tokens > 0x7fffffffll) return invalid_argument("kv_append_bf16: bad num_tokens");
  if (p.num_tokens == 0) return ok_status();
  if (!p.k || !p.v || !p.token_seq || !p.positions) return invalid_argument("kv_append_bf16: null pointer");
  LS_RETURN_IF_ERROR(check_view("kv_append_bf16", p.kv));
  LS_LAUNCH(kv_append_bf16_kernel, static_cast<unsigned>(p.num_tokens), 128, 0, stream)(
      p.k, p.v, p.token_seq, p.positions, p.kv);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

Status launch_attention_bf16(const AttentionBf16Params& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.num_tokens > 0x7fffffffll) return invalid_argument("attention_bf16: bad num_tokens");
  if (p.num_q_heads <= 0 || p.num_kv_heads <= 0 || p.num_q_heads % p.num_kv_heads != 0 ||
      p.num_q_heads > 65535 || p.head_dim <= 0 || p.head_dim > kMaxHeadDim) {
    return invalid_argument("attention_bf16: bad head geometry (head_dim <= 256)");
  }
  if (p.kv.kv_dim != p.num_kv_heads * p.head_dim) {
    return invalid_argument("attention_bf16: kv_dim != num_kv_heads * head_dim");
  }
  if (!(p.scale > 0.0f) || !std::isfinite(p.scale)) return invalid_argument("attention_bf16: bad scale");
  if (p.num_tokens == 0) return ok_status();
  if (!p.q || !p.out || !p.token_seq || !p.positions) return invalid_argument("attention_bf16: null pointer");
  LS_RETURN_IF_ERROR(check_view("attention_bf16", p.kv));
  const dim3 grid(static_cast<unsigned>(p.num_tokens), static_cast<unsigned>(p.num_q_heads));
  LS_LAUNCH(attention_bf16_kernel, grid, kWarps * 32, 0, stream)(
      p.q, p.out, p.token_seq, p.positions, static_cast<int32_t>(p.num_q_heads),
      static_cast<int32_t>(p.num_q_heads / p.num_kv_heads), static_cast<int32_t>(p.head_dim),
      p.scale, p.kv);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
