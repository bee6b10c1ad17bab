// CUDA embedding / row gather, bf16: one block per output row.
#include "common/cuda_check.h"
#include "kernels/cuda_util.cuh"
#include "kernels/embedding/embedding.h"

namespace loraserve::kernels {
namespace {

__global__ void embedding_bf16_kernel(const uint16_t* __restrict__ table,
                                      const int32_t* __restrict__ ids, uint16_t* __restrict__ out,
                                      int64_t hidden, int64_t vocab) {
  const int64_t row = blockIdx.x;
  const int32_t id = ids[row];
  uint16_t* dst = out + row * hidden;
  if (id < 0 || id >= vocab) {  // the host validated ids; never read out of bounds anyway
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = 0;
    return;
  }
  const uint16_t* src = table + static_cast<int64_t>(id) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

Status launch_embedding_bf16(const EmbeddingBf16Params& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.hidden <= 0 || p.vocab <= 0) {
    return invalid_argument("embedding_bf16: bad sizes");
  }
  if (p.num_tokens == 0) return ok_status();
  if (!p.table || !p.ids || !p.out) return invalid_argument("embedding_bf16: null pointer");
  if (p.num_tokens > 0x7fffffffll) return invalid_argument("embedding_bf16: too many rows");
  LS_LAUNCH(embedding_bf16_kernel, static_cast<unsigned>(p.num_tokens), 256, 0, stream)(
      p.table, p.ids, p.out, p.hidden, p.vocab);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
