// Self-test of the emulated cuBLAS against a naive double loop written
// directly from the documented formula:
//   C(i,j) = alpha * sum_p op(A)(i,p) * op(B)(p,j) + beta * C(i,j),
//   op(X)(r,c) = X[r + c*ld] (CUBLAS_OP_N) or X[c + r*ld] (CUBLAS_OP_T).
// Values go in and out through the toolkit's own bf16/fp16 conversions.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "emu_test_util.h"

namespace {

using lsemu_test::DevBuf;

size_t esize(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

void put(void* base, cudaDataType t, int64_t i, float v) {
  if (t == CUDA_R_32F) {
    static_cast<float*>(base)[i] = v;
  } else if (t == CUDA_R_16BF) {
    static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(v);
  } else {
    static_cast<__half*>(base)[i] = __float2half_rn(v);
  }
}

float get(const void* base, cudaDataType t, int64_t i) {
  if (t == CUDA_R_32F) return static_cast<const float*>(base)[i];
  if (t == CUDA_R_16BF) return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
  return __half2float(static_cast<const __half*>(base)[i]);
}

// A stored rows x cols matrix with leading dimension ld; the padding rows
// (r >= rows) hold NaN so that reading them would poison the result.
struct Mat {
  cudaDataType t;
  int rows, cols, ld;
  DevBuf<unsigned char> buf;
  Mat(cudaDataType type, int r, int c, int l)
      : t(type), rows(r), cols(c), ld(l), buf(static_cast<size_t>(l) * (c > 0 ? c : 1) * esize(type)) {
    for (int64_t i = 0; i < static_cast<int64_t>(l) * c; ++i) put(buf.get(), t, i, std::nanf(""));
  }
  void fill(int seed) {
    for (int c = 0; c < cols; ++c)
      for (int r = 0; r < rows; ++r) {
        const int h = (r * 131 + c * 71 + seed * 29) % 97;
        put(buf.get(), t, r + static_cast<int64_t>(c) * ld, static_cast<float>(h - 48) / 16.0f);
      }
  }
  float at(int r, int c) const { return get(buf.get(), t, r + static_cast<int64_t>(c) * ld); }
  void* p() const { return buf.get(); }
};

double op_at(const Mat& x, cublasOperation_t op, int r, int c) {
  return op == CUBLAS_OP_N ? x.at(r, c) : x.at(c, r);
}

struct Combo {
  cudaDataType ab, c;
};

void check_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, Combo ty, int m, int n, int k,
                float alpha, float beta, bool nan_c) {
  const int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
  const int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
  Mat a(ty.ab, ar, ac, ar + 3), b(ty.ab, br, bc, br + 5), c(ty.c, m, n, m + 2);
  a.fill(1);
  b.fill(2);
  if (!nan_c) c.fill(3);
  // C's padding rows must survive untouched.
  for (int j = 0; j < n; ++j)
    for (int i = m; i < c.ld; ++i) put(c.p(), ty.c, i + static_cast<int64_t>(j) * c.ld, 96.0f);
  std::vector<double> ref(static_cast<size_t>(m) * n), mag(ref.size());
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0, sa = 0;
      for (int p = 0; p < k; ++p) {
        const double prod = op_at(a, ta, i, p) * op_at(b, tb, p, j);
        s += prod;
        sa += std::fabs(prod);
      }
      const double cold = beta == 0.0f ? 0.0 : c.at(i, j);
      ref[i + static_cast<size_t>(j) * m] = alpha * s + beta * cold;
      mag[i + static_cast<size_t>(j) * m] = std::fabs(alpha) * sa + std::fabs(beta * cold);
    }
  ASSERT_EQ(cublasGemmEx(h, ta, tb, m, n, k, &alpha, a.p(), ty.ab, a.ld, b.p(), ty.ab, b.ld, &beta, c.p(), ty.c,
                         c.ld, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  const double rel = ty.c == CUDA_R_32F ? 0.0 : (ty.c == CUDA_R_16BF ? 1.0 / 128 : 1.0 / 1024);
  const double abs_floor = ty.c == CUDA_R_16F ? 1e-4 : 1e-6;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      const double r = ref[i + static_cast<size_t>(j) * m];
      const double tol = rel * std::fabs(r) + 1e-5 * mag[i + static_cast<size_t>(j) * m] + abs_floor;
      EXPECT_NEAR(c.at(i, j), r, tol) << "ta=" << ta << " tb=" << tb << " types " << ty.ab << "/" << ty.c
                                      << " (" << i << "," << j << ")";
    }
    for (int i = m; i < c.ld; ++i) EXPECT_EQ(get(c.p(), ty.c, i + static_cast<int64_t>(j) * c.ld), 96.0f);
  }
}

class Cublas : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(cublasCreate(&h_), CUBLAS_STATUS_SUCCESS); }
  void TearDown() override { EXPECT_EQ(cublasDestroy(h_), CUBLAS_STATUS_SUCCESS); }
  cublasHandle_t h_ = nullptr;
};

const Combo kCombos[] = {{CUDA_R_16BF, CUDA_R_16BF},
                         {CUDA_R_16BF, CUDA_R_32F},
                         {CUDA_R_32F, CUDA_R_32F},
                         {CUDA_R_16F, CUDA_R_16F},
                         {CUDA_R_16F, CUDA_R_32F}};
const cublasOperation_t kOps[] = {CUBLAS_OP_N, CUBLAS_OP_T};

TEST_F(Cublas, GemmExAllTransposesAndTypes) {
  for (cublasOperation_t ta : kOps)
    for (cublasOperation_t tb : kOps)
      for (const Combo& ty : kCombos) {
        check_gemm(h_, ta, tb, ty, 37, 23, 19, 1.5f, -0.5f, false);
        check_gemm(h_, ta, tb, ty, 1, 3, 301, 1.0f, 1.0f, false);  // k spans two panels
      }
}

TEST_F(Cublas, GemmExLargerThanOneBlock) {
  check_gemm(h_, CUBLAS_OP_T, CUBLAS_OP_N, {CUDA_R_16BF, CUDA_R_16BF}, 131, 261, 259, 1.0f, 0.0f, false);
  check_gemm(h_, CUBLAS_OP_N, CUBLAS_OP_T, {CUDA_R_32F, CUDA_R_32F}, 257, 5, 513, 0.75f, 2.0f, false);
}

TEST_F(Cublas, BetaZeroNeverReadsC) {
  for (const Combo& ty : kCombos) check_gemm(h_, CUBLAS_OP_T, CUBLAS_OP_N, ty, 9, 7, 5, 2.0f, 0.0f, true);
}

// Products whose exact float sum lies halfway between two bf16 / fp16
// values: the store must round to nearest even, as the toolkit's _rn does.
TEST_F(Cublas, StoresRoundToNearestEven) {
  const float alpha = 1, beta = 0;
  for (cudaDataType t : {CUDA_R_16BF, CUDA_R_16F}) {
    const float eps = t == CUDA_R_16BF ? 0x1p-8f : 0x1p-11f;  // half an ulp at 1.0
    for (float mult : {1.0f, 3.0f, 5.0f}) {
      Mat a(t, 1, 2, 1), b(t, 2, 1, 2), c(t, 1, 1, 1);
      put(a.p(), t, 0, 1.0f);
      put(a.p(), t, 1, mult * eps * 16);
      put(b.p(), t, 0, 1.0f);
      put(b.p(), t, 1, 1.0f / 16);
      const float exact = 1.0f + mult * eps;  // a tie for the output type
      ASSERT_EQ(cublasGemmEx(h_, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 2, &alpha, a.p(), t, 1, b.p(), t, 2, &beta, c.p(),
                             t, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                CUBLAS_STATUS_SUCCESS);
      const float want = t == CUDA_R_16BF ? __bfloat162float(__float2bfloat16_rn(exact))
                                          : __half2float(__float2half_rn(exact));
      EXPECT_EQ(c.at(0, 0), want) << "type " << t << " mult " << mult;
    }
  }
}

TEST_F(Cublas, KZeroScalesC) {
  Mat c(CUDA_R_32F, 3, 2, 3);
  c.fill(4);
  const float before = c.at(1, 1);
  const float alpha = 1, beta = 3;
  Mat a(CUDA_R_32F, 3, 1, 3), b(CUDA_R_32F, 1, 2, 1);
  ASSERT_EQ(cublasGemmEx(h_, CUBLAS_OP_N, CUBLAS_OP_N, 3, 2, 0, &alpha, a.p(), CUDA_R_32F, 3, b.p(), CUDA_R_32F, 1,
                         &beta, c.p(), CUDA_R_32F, 3, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(c.at(1, 1), 3 * before);
  // m == 0 is a no-op.
  ASSERT_EQ(cublasGemmEx(h_, CUBLAS_OP_N, CUBLAS_OP_N, 0, 2, 1, &alpha, a.p(), CUDA_R_32F, 1, b.p(), CUDA_R_32F, 1,
                         &beta, c.p(), CUDA_R_32F, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(c.at(1, 1), 3 * before);
}

TEST_F(Cublas, InvalidArguments) {
  const float one = 1, zero = 0;
  Mat a(CUDA_R_16BF, 8, 8, 8), b(CUDA_R_16BF, 8, 8, 8), c(CUDA_R_16BF, 8, 8, 8);
  auto call = [&](cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc) {
    return cublasGemmEx(h_, ta, tb, m, n, k, &one, a.p(), CUDA_R_16BF, lda, b.p(), CUDA_R_16BF, ldb, &zero, c.p(),
                        CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  EXPECT_EQ(call(CUBLAS_OP_N, CUBLAS_OP_N, 8, 4, 6, 8, 6, 8), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(call(CUBLAS_OP_N, CUBLAS_OP_N, 8, 4, 6, 7, 6, 8), CUBLAS_STATUS_INVALID_VALUE);  // lda < m
  EXPECT_EQ(call(CUBLAS_OP_T, CUBLAS_OP_N, 8, 4, 6, 6, 6, 8), CUBLAS_STATUS_SUCCESS);        // lda >= k
  EXPECT_EQ(call(CUBLAS_OP_T, CUBLAS_OP_N, 8, 4, 6, 5, 6, 8), CUBLAS_STATUS_INVALID_VALUE);  // lda < k
  EXPECT_EQ(call(CUBLAS_OP_N, CUBLAS_OP_N, 8, 4, 6, 8, 5, 8), CUBLAS_STATUS_INVALID_VALUE);  // ldb < k
  EXPECT_EQ(call(CUBLAS_OP_N, CUBLAS_OP_T, 8, 4, 6, 8, 4, 8), CUBLAS_STATUS_SUCCESS);        // ldb >= n
  EXPECT_EQ(call(CUBLAS_OP_N, CUBLAS_OP_T, 8, 4, 6, 8, 3, 8), CUBLAS_STATUS_INVALID_VALUE);  // ldb < n
  EXPECT_EQ(call(CUBLAS_OP_N, CUBLAS_OP_N, 8, 4, 6, 8, 6, 7), CUBLAS_STATUS_INVALID_VALUE);  // ldc < m
  EXPECT_EQ(call(CUBLAS_OP_N, CUBLAS_OP_N, 0, 4, 6, 0, 6, 0), CUBLAS_STATUS_INVALID_VALUE);  // ld < 1
  EXPECT_EQ(call(CUBLAS_OP_N, CUBLAS_OP_N, -1, 4, 6, 8, 6, 8), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(call(CUBLAS_OP_N, CUBLAS_OP_N, 8, 4, -6, 8, 6, 8), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(call(static_cast<cublasOperation_t>(9), CUBLAS_OP_N, 8, 4, 6, 8, 6, 8), CUBLAS_STATUS_INVALID_VALUE);
  // Unsupported type combinations.
  EXPECT_EQ(cublasGemmEx(h_, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, a.p(), CUDA_R_16BF, 8, b.p(), CUDA_R_32F, 8,
                         &zero, c.p(), CUDA_R_32F, 8, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cublasGemmEx(h_, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, a.p(), CUDA_R_32F, 8, b.p(), CUDA_R_32F, 8,
                         &zero, c.p(), CUDA_R_16BF, 8, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cublasGemmEx(h_, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, a.p(), CUDA_R_16BF, 8, b.p(), CUDA_R_16BF, 8,
                         &zero, c.p(), CUDA_R_16BF, 8, CUBLAS_COMPUTE_16F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cublasGemmEx(h_, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, a.p(), CUDA_R_16BF, 8, b.p(), CUDA_R_16BF, 8,
                         &zero, c.p(), CUDA_R_16BF, 8, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT_TENSOR_OP),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasGemmEx(nullptr, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, a.p(), CUDA_R_16BF, 8, b.p(), CUDA_R_16BF,
                         8, &zero, c.p(), CUDA_R_16BF, 8, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_INITIALIZED);
  // A host (non-device) matrix is an illegal address on a GPU.
  std::vector<uint16_t> host_a(64);
  EXPECT_EQ(cublasGemmEx(h_, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, host_a.data(), CUDA_R_16BF, 8, b.p(),
                         CUDA_R_16BF, 8, &zero, c.p(), CUDA_R_16BF, 8, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_EXECUTION_FAILED);
  EXPECT_EQ(cudaGetLastError(), cudaErrorIllegalAddress);
  // ... as is a range running past the end of its allocation.
  EXPECT_EQ(cublasGemmEx(h_, CUBLAS_OP_N, CUBLAS_OP_N, 8, 9, 8, &one, a.p(), CUDA_R_16BF, 8, b.p(), CUDA_R_16BF, 8,
                         &zero, c.p(), CUDA_R_16BF, 8, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_EXECUTION_FAILED);
  cudaGetLastError();
}

TEST_F(Cublas, HandleFunctions) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  EXPECT_EQ(cublasSetStream(h_, s), CUBLAS_STATUS_SUCCESS);
  cudaStream_t got = nullptr;
  EXPECT_EQ(cublasGetStream(h_, &got), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(got, s);
  void* ws = nullptr;
  ASSERT_EQ(cudaMalloc(&ws, 1 << 20), cudaSuccess);
  EXPECT_EQ(cublasSetWorkspace(h_, ws, 1 << 20), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasSetWorkspace(h_, ws, 2 << 20), CUBLAS_STATUS_INVALID_VALUE);  // larger than the allocation
  EXPECT_EQ(cublasSetWorkspace(h_, static_cast<char*>(ws) + 8, 1024), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasSetMathMode(h_, CUBLAS_TF32_TENSOR_OP_MATH), CUBLAS_STATUS_SUCCESS);
  EXPECT_STREQ(cublasGetStatusString(CUBLAS_STATUS_INVALID_VALUE),
               "an invalid numeric value was used as an argument");
  EXPECT_STREQ(cublasGetStatusName(CUBLAS_STATUS_NOT_SUPPORTED), "CUBLAS_STATUS_NOT_SUPPORTED");
  EXPECT_EQ(cublasSetStream(nullptr, s), CUBLAS_STATUS_NOT_INITIALIZED);
  EXPECT_EQ(cudaFree(ws), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

TEST_F(Cublas, StridedBatched) {
  const int m = 5, n = 4, k = 3, batch = 3;
  const float alpha = 1.0f, beta = 0.0f;
  Mat a(CUDA_R_32F, m, k * batch, m), b(CUDA_R_32F, k, n * batch, k), c(CUDA_R_32F, m, n * batch, m);
  a.fill(5);
  b.fill(6);
  ASSERT_EQ(cublasGemmStridedBatchedEx(h_, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, a.p(), CUDA_R_32F, m, m * k,
                                       b.p(), CUDA_R_32F, k, k * n, &beta, c.p(), CUDA_R_32F, m, m * n, batch,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  for (int q = 0; q < batch; ++q)
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double s = 0;
        for (int p = 0; p < k; ++p) s += double(a.at(i, q * k + p)) * b.at(p, q * n + j);
        EXPECT_NEAR(c.at(i, q * n + j), s, 1e-5) << q;
      }
}

TEST_F(Cublas, Speed) {
  struct Shape {
    int m, n, k;
  };
  for (const Shape& s : {Shape{4096, 4096, 16}, Shape{1024, 1024, 1024}}) {
    DevBuf<uint16_t> a(static_cast<size_t>(s.k) * s.m), b(static_cast<size_t>(s.k) * s.n),
        c(static_cast<size_t>(s.m) * s.n);
    std::memset(a.get(), 0x3f, a.bytes());
    std::memset(b.get(), 0x3f, b.bytes());
    const float alpha = 1, beta = 0;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(cublasGemmEx(h_, CUBLAS_OP_T, CUBLAS_OP_N, s.m, s.n, s.k, &alpha, a.get(), CUDA_R_16BF, s.k, b.get(),
                           CUDA_R_16BF, s.k, &beta, c.get(), CUDA_R_16BF, s.m, CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double macs = double(s.m) * s.n * s.k;
    std::printf("[ lsemu    ] GemmEx bf16 %dx%dx%d: %.3f s (%.2f GMAC/s)\n", s.m, s.n, s.k, sec, macs / sec / 1e9);
    if (s.k == 16) {
      EXPECT_LT(sec, 3.0);
    }
  }
}

}  // namespace
