// CUDA RMSNorm: one block per token row, fp32 accumulation, a block-wide
// sum of squares by warp shuffles. Same params and semantics as
// rmsnorm_ref / add_rmsnorm_ref (device pointers).
#include "common/cuda_check.h"
#include "kernels/cuda_util.cuh"
#include "kernels/rmsnorm/rmsnorm.h"

namespace loraserve::kernels {
namespace {

constexpr int kThreads = 256;

// residual (optional) += delta; out = norm(residual or x) * weight
__global__ void rmsnorm_kernel(const float* x, float* residual, const float* delta,
                               const float* weight, float* out, int64_t hidden, float eps) {
  const int64_t row = blockIdx.x;
  const float* in = residual ? residual + row * hidden : x + row * hidden;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = in[i];
    if (residual) {
      v += delta[row * hidden + i];
      residual[row * hidden + i] = v;
    }
    sum += v * v;
  }
  const float inv = rsqrtf(cuda::block_sum<kThreads>(sum) / static_cast<float>(hidden) + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    out[row * hidden + i] = in[i] * inv * weight[i];
  }
}

}  // namespace

Status launch_rmsnorm(const RmsNormParams& p, cudaStream_t stream) {
  if (!p.x || !p.weight || !p.out || p.num_tokens < 0 || p.hidden <= 0) {
    return invalid_argument("rmsnorm: bad params");
  }
  if (p.num_tokens == 0) return ok_status();
  LS_LAUNCH(rmsnorm_kernel, static_cast<unsigned>(p.num_tokens), kThreads, 0, stream)(
      p.x, nullptr, nullptr, p.weight, p.out, p.hidden, p.eps);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

Status launch_add_rmsnorm(const AddRmsNormParams& p, cudaStream_t stream) {
  if (!p.residual || !p.delta || !p.weight || !p.out || p.num_tokens < 0 || p.hidden <= 0) {
    return invalid_argument("add_rmsnorm: bad params");
  }
  if (p.num_tokens == 0) return ok_status();
  LS_LAUNCH(rmsnorm_kernel, static_cast<unsigned>(p.num_tokens), kThreads, 0, stream)(
      nullptr, p.residual, p.delta, p.weight, p.out, p.hidden, p.eps);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
