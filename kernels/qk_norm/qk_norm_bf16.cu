// CUDA per-head RMSNorm of q and k in one launch: one warp per head row
// (the q rows of all tokens, then the k rows), 8 rows per block. Lanes
// stride over the row; each lane reads back only the elements it will
// write, so the row can be normalised in place without a barrier.
#include "common/cuda_check.h"
#include "kernels/cuda_util.cuh"
#include "kernels/qk_norm/qk_norm.h"

namespace loraserve::kernels {
namespace {

constexpr int kRowsPerBlock = 8;

__global__ void qk_norm_bf16_kernel(uint16_t* q, uint16_t* k, const uint16_t* __restrict__ q_weight,
                                    const uint16_t* __restrict__ k_weight, int64_t q_rows,
                                    int64_t total_rows, int head_dim, float eps) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.x / 32;
  if (row >= total_rows) return;  // whole warps leave together
  const int lane = threadIdx.x % 32;
  const bool is_q = row < q_rows;
  uint16_t* x = is_q ? q + row * head_dim : k + (row - q_rows) * head_dim;
  const uint16_t* w = is_q ? q_weight : k_weight;
  float sum = 0.0f;
  for (int i = lane; i < head_dim; i += 32) {
    const float v = cuda::ld_bf16(x + i);
    sum += v * v;
  }
  const float inv = rsqrtf(cuda::warp_sum(sum) / static_cast<float>(head_dim) + eps);
  for (int i = lane; i < head_dim; i += 32) {
    const float normed = cuda::round_bf16(cuda::ld_bf16(x + i) * inv);
    cuda::st_bf16(x + i, cuda::ld_bf16(w + i) * normed);
  }
}

}  // namespace

Status launch_qk_norm_bf16(const QkNormBf16Params& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.num_q_heads <= 0 || p.num_kv_heads <= 0 || p.head_dim <= 0 ||
      p.head_dim > 1024 || !(p.eps >= 0.0f)) {
    return invalid_argument("qk_norm_bf16: bad sizes or eps");
  }
  if (p.num_tokens == 0) return ok_status();
  if (!p.q || !p.k || !p.q_weight || !p.k_weight) {
    return invalid_argument("qk_norm_bf16: null pointer");
  }
  const int64_t q_rows = p.num_tokens * p.num_q_heads;
  const int64_t total = q_rows + p.num_tokens * p.num_kv_heads;
  const int64_t blocks = (total + kRowsPerBlock - 1) / kRowsPerBlock;
  if (blocks > 0x7fffffffll) return invalid_argument("qk_norm_bf16: too many rows");
  LS_LAUNCH(qk_norm_bf16_kernel, static_cast<unsigned>(blocks), 32 * kRowsPerBlock, 0, stream)
  (p.q, p.k, p.q_weight, p.k_weight, q_rows, total, static_cast<int>(p.head_dim), p.eps);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
