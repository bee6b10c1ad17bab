// The GEMM arithmetic behind the emulated cublasGemmEx (validation lives in
// cublas_emu.cc).
#pragma once

#include <library_types.h>

#include <cstdint>

namespace lsemu::detail {

// A column-major matrix operand: element (r, c) of the STORED matrix is at
// p[r + c * ld]. trans: the operation uses its transpose.
struct GemmOperand {
  const void* p;
  cudaDataType type;  // CUDA_R_16BF, CUDA_R_16F or CUDA_R_32F
  int64_t ld;
  bool trans;
};

// C = alpha * op(A) * op(B) + beta * C; op(A) is m x k, op(B) k x n, C m x n.
// Products are accumulated in float in ascending k order; results are
// rounded to nearest even into ctype. With beta == 0 C is never read; with
// alpha == 0 or k == 0, A and B are never read (reference BLAS semantics).
void gemm(int64_t m, int64_t n, int64_t k, float alpha, const GemmOperand& a, const GemmOperand& b,
          float beta, void* c, cudaDataType ctype, int64_t ldc);

}  // namespace lsemu::detail
