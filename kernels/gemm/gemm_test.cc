#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/gemm/gemm.h"

namespace loraserve::kernels {
namespace {

std::vector<float> random_vec(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

GemmParams make(const std::vector<float>& x, const std::vector<float>& w, std::vector<float>& y,
                int64_t m, int64_t n, int64_t k, int64_t ldx, int64_t ldy, bool acc) {
  GemmParams p;
  p.x = x.data();
  p.w = w.data();
  p.y = y.data();
  p.m = m;
  p.n = n;
  p.k = k;
  p.ldx = ldx;
  p.ldy = ldy;
  p.accumulate = acc;
  return p;
}

TEST(Gemm, HandValuesBothImplementations) {
  // x = [[1, 2], [3, 4]], W = [[1, 0], [1, 1], [2, -1]] (n = 3 rows of k = 2):
  //   y[0] = {1*1 + 2*0, 1*1 + 2*1, 1*2 + 2*(-1)} = {1, 3, 0}
  //   y[1] = {3*1 + 4*0, 3*1 + 4*1, 3*2 + 4*(-1)} = {3, 7, 2}
  const std::vector<float> x = {1, 2, 3, 4}, w = {1, 0, 1, 1, 2, -1};
  const std::vector<float> want = {1, 3, 0, 3, 7, 2};
  for (auto* fn : {&gemm_blas, &gemm_naive_ref}) {
    std::vector<float> y(6, std::numeric_limits<float>::quiet_NaN());  // must be overwritten
    ASSERT_TRUE(fn(make(x, w, y, 2, 3, 2, 0, 0, false)).ok());
    EXPECT_EQ(y, want);
    // accumulate: y += x W^T again -> doubled
    ASSERT_TRUE(fn(make(x, w, y, 2, 3, 2, 0, 0, true)).ok());
    EXPECT_EQ(y, (std::vector<float>{2, 6, 0, 6, 14, 4}));
  }
}

// BLAS and the naive loop against a third, in-test double loop, with padded row strides and
// both store modes; padding columns of y must keep their values.
TEST(Gemm, BlasMatchesNaiveWithStridesAndAccumulate) {
  const int64_t m = 7, n = 13, k = 29, ldx = 33, ldy = 17;
  std::mt19937 rng(3);
  const std::vector<float> x = random_vec(m * ldx, rng), w = random_vec(n * k, rng),
                           y0 = random_vec(m * ldy, rng);
  for (bool acc : {false, true}) {
    SCOPED_TRACE(acc ? "accumulate" : "store");
    std::vector<float> yb = y0, yn = y0;
    ASSERT_TRUE(gemm_blas(make(x, w, yb, m, n, k, ldx, ldy, acc)).ok());
    ASSERT_TRUE(gemm_naive_ref(make(x, w, yn, m, n, k, ldx, ldy, acc)).ok());
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < ldy; ++j) {
        const int64_t at = i * ldy + j;
        if (j >= n) {
          ASSERT_EQ(yb[at], y0[at]);
          ASSERT_EQ(yn[at], y0[at]);
          continue;
        }
        double ref = acc ? y0[at] : 0.0;
        for (int64_t l = 0; l < k; ++l) ref += static_cast<double>(x[i * ldx + l]) * w[j * k + l];
        EXPECT_NEAR(yn[at], ref, 1e-6);
        EXPECT_NEAR(yb[at], ref, 1e-5);
      }
    }
  }
}

TEST(Gemm, RejectsBadParams) {
  const std::vector<float> x(8), w(8);
  std::vector<float> y(8);
  for (auto* fn : {&gemm_blas, &gemm_naive_ref}) {
    EXPECT_EQ(fn(make(x, w, y, 2, 2, 4, 3, 0, false)).code(), StatusCode::kInvalidArgument)
        << "ldx < k";
    EXPECT_EQ(fn(make(x, w, y, 2, 4, 2, 0, 2, false)).code(), StatusCode::kInvalidArgument)
        << "ldy < n";
    EXPECT_EQ(fn(make(x, w, y, 2, 0, 2, 0, 0, false)).code(), StatusCode::kInvalidArgument)
        << "n = 0";
    GemmParams p = make(x, w, y, 2, 2, 2, 0, 0, false);
    p.w = nullptr;
    EXPECT_EQ(fn(p).code(), StatusCode::kInvalidArgument) << "null w";
    EXPECT_TRUE(fn(make(x, w, y, 0, 2, 2, 0, 0, false)).ok()) << "m = 0 is an empty batch";
  }
}

}  // namespace
}  // namespace loraserve::kernels
