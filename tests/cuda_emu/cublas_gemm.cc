// Blocked GEMM in float for the emulated cuBLAS. Operands are converted
// into float panels (op applied) so that the inner loop is a contiguous
// axpy over rows, updating four output columns per pass; g++ vectorises it
// without reassociating any sum, so each C element is summed in ascending k
// order exactly like the naive loop (the result does not depend on the
// blocking). Memory stays bounded: kMB x kKB and kKB x kNB panels plus a
// kMB x kNB accumulator, whatever the matrix sizes.
#include "cublas_gemm.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace lsemu::detail {
namespace {

constexpr int64_t kMB = 128;  // rows of C per block
constexpr int64_t kNB = 256;  // columns of C per block
constexpr int64_t kKB = 256;  // depth per panel

float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t float_to_bf16_rne(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float load(const void* p, cudaDataType t, int64_t i) {
  switch (t) {
    case CUDA_R_16BF: return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

void store(void* p, cudaDataType t, int64_t i, float v) {
  switch (t) {
    case CUDA_R_16BF: static_cast<uint16_t*>(p)[i] = float_to_bf16_rne(v); break;
    case CUDA_R_16F: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
    default: static_cast<float*>(p)[i] = v;
  }
}

// Element (r, c) of op(X): op(X)(r, c) = X[r + c*ld], or X[c + r*ld] transposed.
int64_t op_index(const GemmOperand& x, int64_t r, int64_t c) {
  return x.trans ? c + r * x.ld : r + c * x.ld;
}

// dst[q * rows + r] = op(X)(r0 + r, c0 + q) for r < rows, q < cols:
// column q of the block is contiguous. The loop order follows the storage.
template <class Load>
void pack(const GemmOperand& x, int64_t r0, int64_t rows, int64_t c0, int64_t cols, float* dst,
          Load ld) {
  if (!x.trans) {
    for (int64_t q = 0; q < cols; ++q)
      for (int64_t r = 0; r < rows; ++r) dst[q * rows + r] = ld(op_index(x, r0 + r, c0 + q));
  } else {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t q = 0; q < cols; ++q) dst[q * rows + r] = ld(op_index(x, r0 + r, c0 + q));
  }
}

void pack_any(const GemmOperand& x, int64_t r0, int64_t rows, int64_t c0, int64_t cols, float* dst) {
  switch (x.type) {
    case CUDA_R_16BF: {
      const uint16_t* p = static_cast<const uint16_t*>(x.p);
      pack(x, r0, rows, c0, cols, dst, [p](int64_t i) { return bf16_to_float(p[i]); });
      break;
    }
    case CUDA_R_16F: {
      const __half* p = static_cast<const __half*>(x.p);
      pack(x, r0, rows, c0, cols, dst, [p](int64_t i) { return __half2float(p[i]); });
      break;
    }
    default: {
      const float* p = static_cast<const float*>(x.p);
      pack(x, r0, rows, c0, cols, dst, [p](int64_t i) { return p[i]; });
    }
  }
}

// acc[j*mb + i] += sum_p ap[p*mb + i] * bp[j*kb + p]   (i < mb, j < nb, p < kb)
void block_product(const float* __restrict__ ap, const float* __restrict__ bp, float* __restrict__ acc,
                   int64_t mb, int64_t nb, int64_t kb) {
  int64_t j = 0;
  for (; j + 4 <= nb; j += 4) {
    float* __restrict__ c0 = acc + (j + 0) * mb;
    float* __restrict__ c1 = acc + (j + 1) * mb;
    float* __restrict__ c2 = acc + (j + 2) * mb;
    float* __restrict__ c3 = acc + (j + 3) * mb;
    for (int64_t p = 0; p < kb; ++p) {
      const float b0 = bp[(j + 0) * kb + p], b1 = bp[(j + 1) * kb + p];
      const float b2 = bp[(j + 2) * kb + p], b3 = bp[(j + 3) * kb + p];
      const float* __restrict__ x = ap + p * mb;
      for (int64_t i = 0; i < mb; ++i) {
        const float v = x[i];
        c0[i] += v * b0;
        c1[i] += v * b1;
        c2[i] += v * b2;
        c3[i] += v * b3;
      }
    }
  }
  for (; j < nb; ++j) {
    float* __restrict__ c = acc + j * mb;
    for (int64_t p = 0; p < kb; ++p) {
      const float b = bp[j * kb + p];
      const float* __restrict__ x = ap + p * mb;
      for (int64_t i = 0; i < mb; ++i) c[i] += x[i] * b;
    }
  }
}

// C = beta * C, without reading C when beta == 0.
void scale_c(int64_t m, int64_t n, float beta, void* c, cudaDataType ct, int64_t ldc) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < m; ++i) {
      const int64_t at = i + j * ldc;
      store(c, ct, at, beta == 0.0f ? 0.0f : beta * load(c, ct, at));
    }
}

}  // namespace

void gemm(int64_t m, int64_t n, int64_t k, float alpha, const GemmOperand& a, const GemmOperand& b,
          float beta, void* c, cudaDataType ctype, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ctype, ldc);
    return;
  }
  std::vector<float> ap(static_cast<size_t>(kMB * kKB));
  std::vector<float> bp(static_cast<size_t>(kKB * kNB));
  std::vector<float> acc(static_cast<size_t>(kMB * kNB));
  for (int64_t j0 = 0; j0 < n; j0 += kNB) {
    const int64_t nb = std::min(kNB, n - j0);
    for (int64_t i0 = 0; i0 < m; i0 += kMB) {
      const int64_t mb = std::min(kMB, m - i0);
      std::fill(acc.begin(), acc.begin() + mb * nb, 0.0f);
      for (int64_t p0 = 0; p0 < k; p0 += kKB) {
        const int64_t kb = std::min(kKB, k - p0);
        pack_any(a, i0, mb, p0, kb, ap.data());  // ap[p*mb + i] = op(A)(i0+i, p0+p)
        pack_any(b, p0, kb, j0, nb, bp.data());  // bp[j*kb + p] = op(B)(p0+p, j0+j)
        block_product(ap.data(), bp.data(), acc.data(), mb, nb, kb);
      }
      for (int64_t j = 0; j < nb; ++j)
        for (int64_t i = 0; i < mb; ++i) {
          const int64_t at = (i0 + i) + (j0 + j) * ldc;
          float v = alpha * acc[j * mb + i];
          if (beta != 0.0f) v += beta * load(c, ctype, at);
          store(c, ctype, at, v);
        }
    }
  }
}

}  // namespace lsemu::detail
