// CUDA bias rows, bf16, grid-stride over the elements (see bias.h for the
// two modes).
#include <algorithm>

#include "common/cuda_check.h"
#include "kernels/bias/bias.h"
#include "kernels/cuda_util.cuh"

namespace loraserve::kernels {
namespace {

__global__ void bias_bf16_kernel(uint16_t* y, const uint16_t* __restrict__ bias, int64_t cols,
                                 int64_t n, bool broadcast) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % cols;
    if (broadcast) {
      y[i] = bias[c];
    } else {
      cuda::st_bf16(y + i, cuda::ld_bf16(y + i) + cuda::ld_bf16(bias + c));
    }
  }
}

}  // namespace

Status launch_bias_bf16(const BiasBf16Params& p, cudaStream_t stream) {
  if (p.rows < 0 || p.cols <= 0) return invalid_argument("bias_bf16: bad sizes");
  const int64_t n = p.rows * p.cols;
  if (n == 0) return ok_status();
  if (!p.y || !p.bias) return invalid_argument("bias_bf16: null pointer");
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65535);
  LS_LAUNCH(bias_bf16_kernel, static_cast<unsigned>(blocks), threads, 0, stream)
  (p.y, p.bias, p.cols, n, p.mode == BiasMode::kBroadcast);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
