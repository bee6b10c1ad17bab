#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/gemm/gemm_bf16.h"
#include "kernels/rmsnorm/rmsnorm.h"

namespace loraserve::kernels {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Independent double-precision RMSNorm of one row.
std::vector<double> naive_rmsnorm(const float* x, const float* w, int64_t h, double eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < h; ++i) ss += static_cast<double>(x[i]) * x[i];
  const double inv = 1.0 / std::sqrt(ss / h + eps);
  std::vector<double> out(h);
  for (int64_t i = 0; i < h; ++i) out[i] = x[i] * inv * w[i];
  return out;
}

TEST(RmsNormRef, HandValues) {
  // Row 0: x = {3, 4}, eps = 0: mean(x^2) = (9 + 16) / 2 = 12.5, rms = sqrt(12.5) = 3.5355339
  //   out = {3 / 3.5355339 * 1, 4 / 3.5355339 * 2} = {0.8485281, 2.2627417}
  // Row 1: x = {-1, 1}: mean(x^2) = 1, out = {-1 * 1, 1 * 2} = {-1, 2}
  const std::vector<float> x = {3, 4, -1, 1};
  const std::vector<float> w = {1, 2};
  std::vector<float> out(4);
  RmsNormParams p{x.data(), w.data(), out.data(), 2, 2, 0.0f};
  ASSERT_TRUE(rmsnorm_ref(p).ok());
  EXPECT_NEAR(out[0], 0.8485281f, 1e-6);
  EXPECT_NEAR(out[1], 2.2627417f, 1e-6);
  EXPECT_NEAR(out[2], -1.0f, 1e-6);
  EXPECT_NEAR(out[3], 2.0f, 1e-6);
}

TEST(RmsNormRef, EpsIsAddedInsideTheRoot) {
  // x = {1, 1, 1, 1}, eps = 1: 1 / sqrt(1 + 1) = 0.70710678 for every element (weight 1).
  const std::vector<float> x(4, 1.0f), w(4, 1.0f);
  std::vector<float> out(4);
  RmsNormParams p{x.data(), w.data(), out.data(), 1, 4, 1.0f};
  ASSERT_TRUE(rmsnorm_ref(p).ok());
  for (float v : out) EXPECT_NEAR(v, 0.70710678f, 1e-6);
}

TEST(RmsNormRef, MatchesNaiveOnRandomInputsInPlace) {
  const int64_t n = 5, h = 96;
  const float eps = 1e-5f;
  const std::vector<float> x = random_vec(n * h, 1), w = random_vec(h, 2);
  std::vector<float> buf = x;  // out aliases x
  RmsNormParams p{buf.data(), w.data(), buf.data(), n, h, eps};
  ASSERT_TRUE(rmsnorm_ref(p).ok());
  for (int64_t t = 0; t < n; ++t) {
    const auto ref = naive_rmsnorm(x.data() + t * h, w.data(), h, eps);
    for (int64_t i = 0; i < h; ++i)
      EXPECT_NEAR(buf[t * h + i], ref[i], 1e-5 * (1 + std::fabs(ref[i])));
  }
}

TEST(AddRmsNormRef, HandValues) {
  // residual {1, 2} + delta {2, 2} = {3, 4}; then as above with weight {1, 2}, eps 0:
  //   out = {0.8485281, 2.2627417}
  std::vector<float> residual = {1, 2};
  const std::vector<float> delta = {2, 2}, w = {1, 2};
  std::vector<float> out(2);
  AddRmsNormParams p{residual.data(), delta.data(), w.data(), out.data(), 1, 2, 0.0f};
  ASSERT_TRUE(add_rmsnorm_ref(p).ok());
  EXPECT_EQ(residual, (std::vector<float>{3, 4}));
  EXPECT_NEAR(out[0], 0.8485281f, 1e-6);
  EXPECT_NEAR(out[1], 2.2627417f, 1e-6);
}

TEST(AddRmsNormRef, MatchesNaiveOnRandomInputs) {
  const int64_t n = 4, h = 64;
  const float eps = 1e-6f;
  const std::vector<float> r0 = random_vec(n * h, 3), delta = random_vec(n * h, 4),
                           w = random_vec(h, 5);
  std::vector<float> residual = r0, out(n * h);
  AddRmsNormParams p{residual.data(), delta.data(), w.data(), out.data(), n, h, eps};
  ASSERT_TRUE(add_rmsnorm_ref(p).ok());
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> sum(h);
    for (int64_t i = 0; i < h; ++i) {
      sum[i] = r0[t * h + i] + delta[t * h + i];
      EXPECT_EQ(residual[t * h + i], sum[i]);
    }
    const auto ref = naive_rmsnorm(sum.data(), w.data(), h, eps);
    for (int64_t i = 0; i < h; ++i)
      EXPECT_NEAR(out[t * h + i], ref[i], 1e-5 * (1 + std::fabs(ref[i])));
  }
}

// The cpu-bf16 forms, every kernel this CPU runs, in two row slices (as
// two threads take them), against the double-precision naive rows: a
// 2053-wide row (not a multiple of any vector width) and one of 7.
TEST(RmsNormRowsCpu, MatchesNaiveInRowSlicesOnEveryIsa) {
  for (const int64_t h : {int64_t{2053}, int64_t{7}}) {
    const int64_t n = 5;
    const float eps = 1e-5f;
    const std::vector<float> x = random_vec(n * h, 11), w = random_vec(h, 12), r0 = random_vec(n * h, 13);
    for (const CpuIsa isa : runnable_cpu_isas()) {
      SCOPED_TRACE(std::string(cpu_isa_name(isa)) + " hidden " + std::to_string(h));
      std::vector<float> out(n * h, -99.0f);
      const RmsNormParams p{x.data(), w.data(), out.data(), n, h, eps};
      ASSERT_TRUE(validate_rmsnorm(p).ok());
      rmsnorm_rows_cpu(p, static_cast<int>(isa), 0, 2);
      rmsnorm_rows_cpu(p, static_cast<int>(isa), 2, n);
      std::vector<float> residual = r0, out2(n * h, -99.0f);
      const AddRmsNormParams a{residual.data(), x.data(), w.data(), out2.data(), n, h, eps};
      ASSERT_TRUE(validate_add_rmsnorm(a).ok());
      add_rmsnorm_rows_cpu(a, static_cast<int>(isa), 0, 3);
      add_rmsnorm_rows_cpu(a, static_cast<int>(isa), 3, n);
      for (int64_t t = 0; t < n; ++t) {
        const auto ref = naive_rmsnorm(x.data() + t * h, w.data(), h, eps);
        std::vector<float> sum(h);
        for (int64_t i = 0; i < h; ++i) {
          sum[i] = r0[t * h + i] + x[t * h + i];
          ASSERT_EQ(residual[t * h + i], sum[i]) << "row " << t << " col " << i;
        }
        const auto ref_add = naive_rmsnorm(sum.data(), w.data(), h, eps);
        for (int64_t i = 0; i < h; ++i) {
          ASSERT_NEAR(out[t * h + i], ref[i], 2e-6 * (1 + std::fabs(ref[i]))) << "row " << t << " col " << i;
          ASSERT_NEAR(out2[t * h + i], ref_add[i], 2e-6 * (1 + std::fabs(ref_add[i])))
              << "row " << t << " col " << i;
        }
      }
    }
  }
}

TEST(RmsNormRef, RejectsBadParams) {
  const std::vector<float> x(4), w(2);
  std::vector<float> out(4);
  RmsNormParams p{x.data(), nullptr, out.data(), 2, 2, 1e-5f};
  EXPECT_EQ(rmsnorm_ref(p).code(), StatusCode::kInvalidArgument);
  p = RmsNormParams{x.data(), w.data(), out.data(), 2, 0, 1e-5f};
  EXPECT_EQ(rmsnorm_ref(p).code(), StatusCode::kInvalidArgument);
  AddRmsNormParams a{nullptr, x.data(), w.data(), out.data(), 2, 2, 1e-5f};
  EXPECT_EQ(add_rmsnorm_ref(a).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(validate_add_rmsnorm(a).code(), StatusCode::kInvalidArgument);
  p = RmsNormParams{x.data(), w.data(), nullptr, 2, 2, 1e-5f};
  EXPECT_EQ(validate_rmsnorm(p).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve::kernels
