#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/silu_mul/silu_mul.h"

namespace loraserve::kernels {
namespace {

TEST(SiluMulRef, HandValues) {
  // silu(g) = g / (1 + e^-g):
  //   silu(0)  = 0                          * up 5   = 0
  //   silu(1)  = 1 / (1 + 0.3678794) = 0.7310586  * 2 = 1.4621172
  //   silu(-1) = -1 / (1 + 2.7182818) = -0.2689414 * 2 = -0.5378828
  //   silu(2)  = 2 / (1 + 0.1353353) = 1.7615942  * 0.5 = 0.8807971
  const std::vector<float> gate = {0, 1, -1, 2}, up = {5, 2, 2, 0.5f};
  std::vector<float> out(4);
  SiluMulParams p{gate.data(), up.data(), out.data(), 2, 2};
  ASSERT_TRUE(silu_mul_ref(p).ok());
  EXPECT_NEAR(out[0], 0.0f, 1e-7);
  EXPECT_NEAR(out[1], 1.4621172f, 1e-6);
  EXPECT_NEAR(out[2], -0.5378828f, 1e-6);
  EXPECT_NEAR(out[3], 0.8807971f, 1e-6);
}

TEST(SiluMulRef, MatchesNaiveOnRandomInputsWithOutAliasingGate) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-8.0f, 8.0f);
  const int64_t n = 3, inter = 50;
  std::vector<float> gate(n * inter), up(n * inter);
  for (float& v : gate) v = d(rng);
  for (float& v : up) v = d(rng);
  std::vector<float> buf = gate;
  SiluMulParams p{buf.data(), up.data(), buf.data(), n, inter};
  ASSERT_TRUE(silu_mul_ref(p).ok());
  for (int64_t i = 0; i < n * inter; ++i) {
    const double g = gate[i];
    const double ref = g / (1.0 + std::exp(-g)) * up[i];
    EXPECT_NEAR(buf[i], ref, 1e-5 * (1 + std::fabs(ref)));
  }
}

TEST(SiluMulRef, RejectsBadParams) {
  std::vector<float> a(4);
  SiluMulParams p{a.data(), nullptr, a.data(), 2, 2};
  EXPECT_EQ(silu_mul_ref(p).code(), StatusCode::kInvalidArgument);
  p = SiluMulParams{a.data(), a.data(), a.data(), 2, 0};
  EXPECT_EQ(silu_mul_ref(p).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve::kernels
