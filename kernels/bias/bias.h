// A bias row added to every row of a projection's output: y[t, :] += bias.
// Qwen2 puts one on its q/k/v projections (nn.Linear(..., bias=True)).
// With LoRA the bias belongs to the base linear: PEFT adds the LoRA delta to
// the output of the biased base layer, so the engine runs linear + bias,
// then the LoRA expand into the same rows.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace loraserve::kernels {

struct BiasAddParams {
  float* y = nullptr;           // [rows, cols], in place
  const float* bias = nullptr;  // [cols]
  int64_t rows = 0;
  int64_t cols = 0;
};

Status bias_add_ref(const BiasAddParams& p);

}  // namespace loraserve::kernels

#ifdef LORASERVE_WITH_CUDA
#include <cuda_runtime.h>
namespace loraserve::kernels {
// Device pointers; asynchronous on `stream`. bf16 (uint16_t bit patterns).
// kAdd: y = bf16(y + bias), bias_add_ref's operation on bf16 values.
// kBroadcast: y = bias in every row. The cuda backend uses this before a
// cuBLAS GEMM with beta = 1, so that y = bf16(x W^T + bias) is rounded once,
// after the bias, as torch's addmm (cuBLASLt bias epilogue) does in bf16.
enum class BiasMode { kAdd, kBroadcast };
struct BiasBf16Params {
  uint16_t* y = nullptr;           // [rows, cols]
  const uint16_t* bias = nullptr;  // [cols]
  int64_t rows = 0;
  int64_t cols = 0;
  BiasMode mode = BiasMode::kAdd;
};
Status launch_bias_bf16(const BiasBf16Params& p, cudaStream_t stream);
}  // namespace loraserve::kernels
#endif
