// CUDA RMSNorm, bf16 I/O and fp32 math: one block per token row. Same
// semantics as rmsnorm_ref / add_rmsnorm_ref up to bf16 rounding of the
// stored values (see rmsnorm.h).
#include "common/cuda_check.h"
#include "kernels/cuda_util.cuh"
#include "kernels/rmsnorm/rmsnorm.h"

namespace loraserve::kernels {
namespace {

constexpr int kThreads = 256;

// With residual != nullptr: residual = bf16(residual + delta); the norm is of
// that rounded row. Otherwise the norm of x. Each thread reads back only
// the elements it wrote itself, so no barrier is needed between the passes
// (block_sum has its own).
__global__ void rmsnorm_bf16_kernel(const uint16_t* x, uint16_t* residual, const uint16_t* delta,
                                    const uint16_t* __restrict__ weight, uint16_t* out,
                                    int64_t hidden, float eps) {
  const int64_t row = blockIdx.x;
  const uint16_t* in = residual ? residual + row * hidden : x + row * hidden;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
    float v = cuda::ld_bf16(in + i);
    if (residual) {
      v = cuda::round_bf16(v + cuda::ld_bf16(delta + row * hidden + i));
      cuda::st_bf16(residual + row * hidden + i, v);
    }
    sum += v * v;
  }
  const float inv = rsqrtf(cuda::block_sum<kThreads>(sum) / static_cast<float>(hidden) + eps);
  for (int64_t i = threadIdx.x; i < hidden; i += kThreads) {
    const float normed = cuda::round_bf16(cuda::ld_bf16(in + i) * inv);
    cuda::st_bf16(out + row * hidden + i, cuda::ld_bf16(weight + i) * normed);
  }
}

Status check_sizes(const char* op, int64_t num_tokens, int64_t hidden, float eps) {
  if (num_tokens < 0 || num_tokens > 0x7fffffffll || hidden <= 0 || !(eps >= 0.0f)) {
    return invalid_argument(std::string(op) + ": bad sizes or eps");
  }
  return ok_status();
}

}  // namespace

Status launch_rmsnorm_bf16(const RmsNormBf16Params& p, cudaStream_t stream) {
  LS_RETURN_IF_ERROR(check_sizes("rmsnorm_bf16", p.num_tokens, p.hidden, p.eps));
  if (p.num_tokens == 0) return ok_status();
  if (!p.x || !p.weight || !p.out) return invalid_argument("rmsnorm_bf16: null pointer");
  LS_LAUNCH(rmsnorm_bf16_kernel, static_cast<unsigned>(p.num_tokens), kThreads, 0, stream)(
      p.x, nullptr, nullptr, p.weight, p.out, p.hidden, p.eps);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

Status launch_add_rmsnorm_bf16(const AddRmsNormBf16Params& p, cudaStream_t stream) {
  LS_RETURN_IF_ERROR(check_sizes("add_rmsnorm_bf16", p.num_tokens, p.hidden, p.eps));
  if (p.num_tokens == 0) return ok_status();
  if (!p.residual || !p.delta || !p.weight || !p.out) {
    return invalid_argument("add_rmsnorm_bf16: null pointer");
  }
  LS_LAUNCH(rmsnorm_bf16_kernel, static_cast<unsigned>(p.num_tokens), kThreads, 0, stream)(
      nullptr, p.residual, p.delta, p.weight, p.out, p.hidden, p.eps);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
