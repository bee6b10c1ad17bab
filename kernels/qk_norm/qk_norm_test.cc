#include "kernels/qk_norm/qk_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace loraserve::kernels {
namespace {

TEST(QkNormRef, HandValues) {
  // One token, one q head and one k head of head_dim 2, eps 0:
  //   q = (3, 4): mean square 12.5, inv_rms = 1/sqrt(12.5) = 0.2828427,
  //   weights (1, 2) -> (0.8485281, 2.2627417)
  //   k = (1, -1): mean square 1 -> (1, -1) * (0.5, 3) = (0.5, -3)
  std::vector<float> q = {3, 4}, k = {1, -1};
  const std::vector<float> qw = {1, 2}, kw = {0.5f, 3};
  QkNormParams p{q.data(), k.data(), qw.data(), kw.data(), 1, 1, 1, 2, 0.0f};
  ASSERT_TRUE(qk_norm_ref(p).ok());
  EXPECT_NEAR(q[0], 0.8485281f, 1e-6);
  EXPECT_NEAR(q[1], 2.2627417f, 1e-6);
  EXPECT_NEAR(k[0], 0.5f, 1e-7);
  EXPECT_NEAR(k[1], -3.0f, 1e-6);
}

// Every (token, head) slice is normalised on its own with the weight of
// its kind (q or k), GQA head counts, eps included.
TEST(QkNormRef, EachHeadSliceIsNormalisedAlone) {
  const int64_t T = 3, nq = 4, nkv = 2, hd = 10;
  const float eps = 1e-3f;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-4.0f, 4.0f);
  std::vector<float> q(T * nq * hd), k(T * nkv * hd), qw(hd), kw(hd);
  for (auto* v : {&q, &k, &qw, &kw}) {
    for (float& x : *v) x = d(rng);
  }
  const std::vector<float> q0 = q, k0 = k;
  QkNormParams p{q.data(), k.data(), qw.data(), kw.data(), T, nq, nkv, hd, eps};
  ASSERT_TRUE(qk_norm_ref(p).ok());
  auto check = [&](const std::vector<float>& in, const std::vector<float>& out,
                   const std::vector<float>& w, int64_t heads) {
    for (int64_t r = 0; r < T * heads; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < hd; ++i) ss += double(in[r * hd + i]) * in[r * hd + i];
      const double inv = 1.0 / std::sqrt(ss / hd + eps);
      for (int64_t i = 0; i < hd; ++i) {
        const double want = w[i] * in[r * hd + i] * inv;
        EXPECT_NEAR(out[r * hd + i], want, 1e-5 * (1 + std::fabs(want))) << "row " << r;
      }
    }
  };
  check(q0, q, qw, nq);
  check(k0, k, kw, nkv);
}

TEST(QkNormRef, RejectsBadParams) {
  std::vector<float> a(8);
  EXPECT_TRUE(qk_norm_ref(QkNormParams{nullptr, nullptr, nullptr, nullptr, 0, 1, 1, 4}).ok());
  EXPECT_EQ(qk_norm_ref(QkNormParams{a.data(), a.data(), a.data(), nullptr, 1, 1, 1, 4}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(qk_norm_ref(QkNormParams{a.data(), a.data(), a.data(), a.data(), 1, 1, 0, 4}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(qk_norm_ref(QkNormParams{a.data(), a.data(), a.data(), a.data(), 1, 1, 1, 0}).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve::kernels
