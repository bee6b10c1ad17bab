// CUDA SwiGLU: elementwise, grid-stride. Same semantics as silu_mul_ref.
#include <algorithm>

#include "common/cuda_check.h"
#include "kernels/silu_mul/silu_mul.h"

namespace loraserve::kernels {
namespace {

__global__ void silu_mul_kernel(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + __expf(-g)) * up[i];
  }
}

}  // namespace

Status launch_silu_mul(const SiluMulParams& p, cudaStream_t stream) {
  if (!p.gate || !p.up || !p.out || p.num_tokens < 0 || p.inter <= 0) {
    return invalid_argument("silu_mul: bad params");
  }
  const int64_t n = p.num_tokens * p.inter;
  if (n == 0) return ok_status();
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65535);
  LS_LAUNCH(silu_mul_kernel, static_cast<unsigned>(blocks), threads, 0, stream)(p.gate, p.up, p.out, n);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
