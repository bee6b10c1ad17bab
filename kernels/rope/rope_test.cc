#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/rope/rope.h"

namespace loraserve::kernels {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Rotates one q row and one k row (1 head each) at `pos`.
void rotate_single(std::vector<float>& q, std::vector<float>& k, int32_t pos,
                   const std::vector<float>& inv_freq) {
  RopeParams p;
  p.q = q.data();
  p.k = k.data();
  p.positions = &pos;
  p.inv_freq = inv_freq.data();
  p.num_tokens = 1;
  p.num_q_heads = 1;
  p.num_kv_heads = 1;
  p.head_dim = static_cast<int64_t>(q.size());
  ASSERT_TRUE(rope_ref(p).ok());
}

TEST(RopeInvFreq, PlainThetaHandValues) {
  // head_dim 4, theta 100: inv_freq[i] = 100^(-2i/4) = {1, 100^-0.5} = {1, 0.1}
  const auto f = rope_inv_freq(4, 100.0, nullptr);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_FLOAT_EQ(f[1], 0.1f);
}

TEST(RopeInvFreq, Llama3ScalingThreeRegimes) {
  // head_dim 6, theta 1e9: base inv_freq = 1e9^(-{0,2,4}/6) = {1, 1e-3, 1e-6}.
  // factor 8, low 1, high 4, original 8192:
  //   low_freq_wavelen = 8192 / 1 = 8192, high_freq_wavelen = 8192 / 4 = 2048.
  // i=0: wavelen = 2*pi = 6.28 < 2048            -> kept: 1
  // i=1: wavelen = 2*pi*1e3 = 6283.185 (medium)   ->
  //      smooth = (8192 / 6283.185 - 1) / (4 - 1) = (1.3037973 - 1) / 3 = 0.1012658
  //      (1 - 0.1012658) * 1e-3 / 8 + 0.1012658 * 1e-3 = 1.1234178e-4 + 1.012658e-4 = 2.1360754e-4
  // i=2: wavelen = 2*pi*1e6 > 8192                -> 1e-6 / 8 = 1.25e-7
  Llama3RopeScaling s;  // defaults are Llama 3.1's: 8, 1, 4, 8192
  const auto f = rope_inv_freq(6, 1e9, &s);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_NEAR(f[1], 2.1360754e-4f, 1e-10);
  EXPECT_NEAR(f[2], 1.25e-7f, 1e-13);
}

TEST(RopeInvFreq, RejectsOddHeadDim) { EXPECT_TRUE(rope_inv_freq(5, 10000.0, nullptr).empty()); }

TEST(RopeRef, PositionZeroIsIdentity) {
  const auto inv = rope_inv_freq(8, 10000.0, nullptr);
  const std::vector<float> q0 = random_vec(8, 1), k0 = random_vec(8, 2);
  std::vector<float> q = q0, k = k0;
  rotate_single(q, k, 0, inv);
  EXPECT_EQ(q, q0);
  EXPECT_EQ(k, k0);
}

TEST(RopeRef, TwoDimHandCase) {
  // head_dim 2, inv_freq {1}, pos 1: angle 1 rad, cos = 0.5403023, sin = 0.8414710.
  //   q = {1, 0}: {1*cos - 0*sin, 0*cos + 1*sin} = {0.5403023, 0.8414710}
  //   k = {0, 1}: {0*cos - 1*sin, 1*cos + 0*sin} = {-0.8414710, 0.5403023}
  std::vector<float> q = {1, 0}, k = {0, 1};
  rotate_single(q, k, 1, {1.0f});
  EXPECT_NEAR(q[0], 0.5403023f, 1e-6);
  EXPECT_NEAR(q[1], 0.8414710f, 1e-6);
  EXPECT_NEAR(k[0], -0.8414710f, 1e-6);
  EXPECT_NEAR(k[1], 0.5403023f, 1e-6);
}

TEST(RopeRef, FourDimHandCasePairsIWithIPlusHalf) {
  // head_dim 4, inv_freq {1, 0.1}, pos 2: angles {2, 0.2}. Pairs are (x0, x2) and (x1, x3):
  //   out0 = 1*cos2 - 3*sin2  = -0.4161468 - 2.7278923 = -3.1440391
  //   out2 = 3*cos2 + 1*sin2  = -1.2484405 + 0.9092974 = -0.3391431
  //   out1 = 2*cos.2 - 4*sin.2 = 1.9601332 - 0.7946773 = 1.1654558
  //   out3 = 4*cos.2 + 2*sin.2 = 3.9202663 + 0.3973387 = 4.3176050
  std::vector<float> q = {1, 2, 3, 4}, k = {1, 2, 3, 4};
  rotate_single(q, k, 2, {1.0f, 0.1f});
  const float expected[4] = {-3.1440391f, 1.1654558f, -0.3391431f, 4.3176050f};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(q[i], expected[i], 2e-6) << i;
    EXPECT_NEAR(k[i], expected[i], 2e-6) << i;
  }
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

TEST(RopeRef, ScoreDependsOnlyOnRelativePosition) {
  const auto inv = rope_inv_freq(16, 10000.0, nullptr);
  const std::vector<float> q0 = random_vec(16, 3), k0 = random_vec(16, 4);
  auto score = [&](int32_t m, int32_t n) {
    std::vector<float> q = q0, k = k0, unused_q = q0, unused_k = k0;
    rotate_single(q, unused_k, m, inv);
    rotate_single(unused_q, k, n, inv);
    return dot(q, k);
  };
  const double s3 = score(3, 0);
  EXPECT_NEAR(score(10, 7), s3, 1e-5);
  EXPECT_NEAR(score(103, 100), s3, 1e-4);
  const double s_neg = score(0, 5);
  EXPECT_NEAR(score(20, 25), s_neg, 1e-5);
  EXPECT_GT(std::fabs(score(8, 0) - s3), 1e-3) << "a different offset should change the score";
}

TEST(RopeRef, MatchesNaiveOnRandomHeadsAndPositions) {
  const int64_t n = 4, nq = 4, nkv = 2, d = 32, half = d / 2;
  Llama3RopeScaling scaling;
  const auto inv = rope_inv_freq(d, 500000.0, &scaling);
  const std::vector<float> q0 = random_vec(n * nq * d, 5), k0 = random_vec(n * nkv * d, 6);
  std::vector<float> q = q0, k = k0;
  const std::vector<int32_t> pos = {0, 1, 37, 511};
  RopeParams p{q.data(), k.data(), pos.data(), inv.data(), n, nq, nkv, d};
  ASSERT_TRUE(rope_ref(p).ok());
  auto check = [&](const std::vector<float>& x0, const std::vector<float>& x, int64_t heads) {
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        const float* in = x0.data() + (t * heads + h) * d;
        const float* out = x.data() + (t * heads + h) * d;
        for (int64_t i = 0; i < half; ++i) {
          const double a = static_cast<double>(pos[t]) * inv[i];
          const double lo = in[i] * std::cos(a) - in[i + half] * std::sin(a);
          const double hi = in[i + half] * std::cos(a) + in[i] * std::sin(a);
          EXPECT_NEAR(out[i], lo, 2e-4);
          EXPECT_NEAR(out[i + half], hi, 2e-4);
        }
      }
    }
  };
  check(q0, q, nq);
  check(k0, k, nkv);
}

TEST(RopeRef, RejectsBadParams) {
  std::vector<float> q(6), k(6);
  const std::vector<float> inv = {1.0f};
  const int32_t pos = 0;
  RopeParams p{q.data(), k.data(), &pos, inv.data(), 1, 1, 1, 3};
  EXPECT_EQ(rope_ref(p).code(), StatusCode::kInvalidArgument) << "odd head_dim";
  p = RopeParams{q.data(), k.data(), &pos, nullptr, 1, 1, 1, 2};
  EXPECT_EQ(rope_ref(p).code(), StatusCode::kInvalidArgument) << "null inv_freq";
  const int32_t neg = -1;
  p = RopeParams{q.data(), k.data(), &neg, inv.data(), 1, 1, 1, 2};
  EXPECT_EQ(rope_ref(p).code(), StatusCode::kInvalidArgument) << "negative position";
}

}  // namespace
}  // namespace loraserve::kernels
