// Dense layer product used for every base-model projection and the lm_head:
//   y[m, n] = x[m, k] W[n, k]^T       (PyTorch nn.Linear layout, no bias)
// CPU GEMMs go to BLAS (OpenBLAS sgemm); gemm_naive_ref is the triple loop
// the tests use as the independent check.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace loraserve::kernels {

struct GemmParams {
  const float* x = nullptr;  // [m, k], row stride ldx
  const float* w = nullptr;  // [n, k], contiguous
  float* y = nullptr;        // [m, n], row stride ldy
  int64_t m = 0, n = 0, k = 0;
  int64_t ldx = 0;  // 0 means k
  int64_t ldy = 0;  // 0 means n
  bool accumulate = false;  // y += x W^T instead of y = x W^T
};

Status gemm_blas(const GemmParams& p);
Status gemm_naive_ref(const GemmParams& p);

}  // namespace loraserve::kernels
