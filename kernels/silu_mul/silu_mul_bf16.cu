// CUDA SwiGLU, bf16 I/O and fp32 math, grid-stride.
#include <algorithm>

#include "common/cuda_check.h"
#include "kernels/cuda_util.cuh"
#include "kernels/silu_mul/silu_mul.h"

namespace loraserve::kernels {
namespace {

__global__ void silu_mul_bf16_kernel(const uint16_t* gate, const uint16_t* up, uint16_t* out,
                                     int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = cuda::ld_bf16(gate + i);
    const float u = cuda::ld_bf16(up + i);
    cuda::st_bf16(out + i, g / (1.0f + expf(-g)) * u);
  }
}

}  // namespace

Status launch_silu_mul_bf16(const SiluMulBf16Params& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.inter <= 0) return invalid_argument("silu_mul_bf16: bad sizes");
  const int64_t n = p.num_tokens * p.inter;
  if (n == 0) return ok_status();
  if (!p.gate || !p.up || !p.out) return invalid_argument("silu_mul_bf16: null pointer");
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65535);
  LS_LAUNCH(silu_mul_bf16_kernel, static_cast<unsigned>(blocks), threads, 0, stream)(p.gate, p.up, p.out,
                                                                              n);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
