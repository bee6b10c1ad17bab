#include <cblas.h>

#include <climits>
#include <string>

#include "kernels/gemm/gemm.h"

namespace loraserve::kernels {

namespace {

int64_t ldx_of(const GemmParams& p) { return p.ldx == 0 ? p.k : p.ldx; }
int64_t ldy_of(const GemmParams& p) { return p.ldy == 0 ? p.n : p.ldy; }

// Returns OK with `empty` set when there is nothing to compute (m == 0).
Status validate(const char* op, const GemmParams& p, bool* empty) {
  const std::string prefix = std::string(op) + ": ";
  if (p.m < 0 || p.n <= 0 || p.k <= 0)
    return invalid_argument(prefix + "need m >= 0, n > 0, k > 0");
  if (ldx_of(p) < p.k || ldy_of(p) < p.n)
    return invalid_argument(prefix + "need ldx >= k, ldy >= n");
  // cblas takes int sizes; anything larger is a caller bug, not something to truncate.
  if (p.m > INT_MAX || p.n > INT_MAX || ldx_of(p) > INT_MAX || ldy_of(p) > INT_MAX) {
    return invalid_argument(prefix + "sizes exceed the BLAS int range");
  }
  *empty = p.m == 0;
  if (!*empty && (!p.x || !p.w || !p.y)) return invalid_argument(prefix + "null x, w or y");
  return ok_status();
}

}  // namespace

Status gemm_blas(const GemmParams& p) {
  bool empty = false;
  LS_RETURN_IF_ERROR(validate("gemm_blas", p, &empty));
  if (empty) return ok_status();
  // Row-major y = x W^T: W is [n, k] so it enters transposed with leading dimension k.
  // beta = 0 makes BLAS ignore y's previous contents (even NaN), as a plain store should.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(p.m), static_cast<int>(p.n),
              static_cast<int>(p.k), 1.0f, p.x, static_cast<int>(ldx_of(p)), p.w,
              static_cast<int>(p.k), p.accumulate ? 1.0f : 0.0f, p.y, static_cast<int>(ldy_of(p)));
  return ok_status();
}

Status gemm_naive_ref(const GemmParams& p) {
  bool empty = false;
  LS_RETURN_IF_ERROR(validate("gemm_naive_ref", p, &empty));
  const int64_t ldx = ldx_of(p), ldy = ldy_of(p);
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double acc = p.accumulate ? static_cast<double>(p.y[i * ldy + j]) : 0.0;
      for (int64_t l = 0; l < p.k; ++l) {
        acc += static_cast<double>(p.x[i * ldx + l]) * p.w[j * p.k + l];
      }
      p.y[i * ldy + j] = static_cast<float>(acc);
    }
  }
  return ok_status();
}

}  // namespace loraserve::kernels
