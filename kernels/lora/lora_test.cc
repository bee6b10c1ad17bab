#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/lora/lora.h"

namespace loraserve::kernels {
namespace {

std::vector<float> random_vec(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

LoraSegment segment(int32_t begin, int32_t end, int32_t rank, float scale, const float* a,
                    const float* bt) {
  LoraSegment s;
  s.begin = begin;
  s.end = end;
  s.rank = rank;
  s.scale = scale;
  s.a = a;
  s.bt = bt;
  return s;
}

TEST(LoraRef, HandValuesRankOne) {
  // in 2, out 2, rank 1: x = {1, 2}, A = {3, 4}       -> v = 1*3 + 2*4 = 11
  // Bt = {0.5, -1}, scale 2, y0 = {1, 1}             -> y = {1 + 2*11*0.5, 1 + 2*11*(-1)} = {12,
  // -21}
  const std::vector<float> x = {1, 2}, a = {3, 4}, bt = {0.5f, -1.0f};
  std::vector<float> v(1), y = {1, 1};
  const LoraSegment seg = segment(0, 1, 1, 2.0f, a.data(), bt.data());
  ASSERT_TRUE(lora_shrink_ref({x.data(), 2, v.data(), 1, 2, 1, &seg, 1}).ok());
  EXPECT_FLOAT_EQ(v[0], 11.0f);
  ASSERT_TRUE(lora_expand_ref({v.data(), 1, y.data(), 2, 2, 1, &seg, 1}).ok());
  EXPECT_FLOAT_EQ(y[0], 12.0f);
  EXPECT_FLOAT_EQ(y[1], -21.0f);
}

// Ragged segments with ranks 8, 16, 64, 8 over 20 token rows; rows 0, 6..8 and 19 use no
// adapter. x and y have padded strides, so the padding must survive too.
TEST(LoraRef, RaggedMixedRanksMatchDensePerTokenLoops) {
  const int64_t n = 20, in = 24, out = 40, xs = 28, ys = 44, vs = 64;
  std::mt19937 rng(5);
  struct Spec {
    int32_t begin, end, rank;
    float scale;
  };
  const std::vector<Spec> specs = {
      {1, 5, 8, 2.0f}, {5, 6, 16, 0.5f}, {9, 17, 64, 0.25f}, {17, 19, 8, 1.0f}};
  std::vector<std::vector<float>> as, bts;
  std::vector<LoraSegment> segs;
  for (const Spec& s : specs) {
    as.push_back(random_vec(s.rank * in, rng));
    bts.push_back(random_vec(s.rank * out, rng));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    segs.push_back(segment(specs[i].begin, specs[i].end, specs[i].rank, specs[i].scale,
                           as[i].data(), bts[i].data()));
  }
  const std::vector<float> x = random_vec(n * xs, rng), y0 = random_vec(n * ys, rng);
  std::vector<float> v(n * vs, 0.0f), y = y0;
  const int32_t ns = static_cast<int32_t>(segs.size());
  ASSERT_TRUE(lora_shrink_ref({x.data(), xs, v.data(), vs, in, n, segs.data(), ns}).ok());
  ASSERT_TRUE(lora_expand_ref({v.data(), vs, y.data(), ys, out, n, segs.data(), ns}).ok());

  std::vector<bool> covered(n, false);
  for (size_t si = 0; si < specs.size(); ++si) {
    const Spec& s = specs[si];
    for (int32_t t = s.begin; t < s.end; ++t) {
      covered[t] = true;
      std::vector<double> vt(s.rank, 0.0);
      for (int32_t r = 0; r < s.rank; ++r) {
        for (int64_t c = 0; c < in; ++c)
          vt[r] += static_cast<double>(x[t * xs + c]) * as[si][r * in + c];
        EXPECT_NEAR(v[t * vs + r], vt[r], 1e-4) << "v row " << t << " r " << r;
      }
      for (int64_t o = 0; o < out; ++o) {
        double acc = 0.0;
        for (int32_t r = 0; r < s.rank; ++r) acc += vt[r] * bts[si][r * out + o];
        const double ref = y0[t * ys + o] + s.scale * acc;
        EXPECT_NEAR(y[t * ys + o], ref, 1e-4) << "y row " << t << " col " << o;
      }
    }
  }
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t o = 0; o < ys; ++o) {
      if (!covered[t] || o >= out) {
        ASSERT_EQ(y[t * ys + o], y0[t * ys + o]) << t << "," << o;
      }
    }
    if (!covered[t]) {
      for (int64_t r = 0; r < vs; ++r) ASSERT_EQ(v[t * vs + r], 0.0f);
    }
  }
}

TEST(LoraRef, ValidateSegmentsCatchesBadLayouts) {
  const std::vector<float> w(64 * 8, 0.0f);
  const float* a = w.data();
  auto check = [&](std::vector<LoraSegment> segs, StatusCode want, const char* why) {
    EXPECT_EQ(validate_lora_segments(segs.data(), static_cast<int32_t>(segs.size()), 10, 16).code(),
              want)
        << why;
  };
  check({segment(0, 4, 8, 1, a, a), segment(4, 10, 16, 1, a, a)}, StatusCode::kOk, "valid");
  check({segment(0, 4, 8, 1, a, a), segment(3, 6, 8, 1, a, a)}, StatusCode::kInvalidArgument,
        "overlap");
  check({segment(5, 8, 8, 1, a, a), segment(0, 2, 8, 1, a, a)}, StatusCode::kInvalidArgument,
        "unordered");
  check({segment(0, 4, 17, 1, a, a)}, StatusCode::kInvalidArgument, "rank > max_rank");
  check({segment(0, 4, 0, 1, a, a)}, StatusCode::kInvalidArgument, "rank 0");
  check({segment(6, 11, 8, 1, a, a)}, StatusCode::kInvalidArgument, "end past num_tokens");
  check({segment(-1, 2, 8, 1, a, a)}, StatusCode::kInvalidArgument, "negative begin");
  check({segment(4, 2, 8, 1, a, a)}, StatusCode::kInvalidArgument, "end before begin");
  check({segment(0, 4, 8, 1, nullptr, a)}, StatusCode::kInvalidArgument, "null A");
  EXPECT_EQ(validate_lora_segments(nullptr, 1, 10, 16).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(validate_lora_segments(nullptr, 0, 10, 16).ok());
}

TEST(LoraRef, ShrinkRejectsRankWiderThanScratchAndLeavesItUntouched) {
  const std::vector<float> x(4 * 8, 1.0f), a(16 * 8, 1.0f), bt(16 * 8, 1.0f);
  std::vector<float> v(4 * 8, -3.0f);
  const LoraSegment seg = segment(0, 4, 16, 1.0f, a.data(), bt.data());
  EXPECT_EQ(lora_shrink_ref({x.data(), 8, v.data(), 8, 8, 4, &seg, 1}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(v, std::vector<float>(4 * 8, -3.0f));
  EXPECT_EQ(lora_shrink_ref({x.data(), 4, v.data(), 16, 8, 4, &seg, 1}).code(),
            StatusCode::kInvalidArgument)
      << "x_stride < in_dim";
  std::vector<float> y(4 * 8);
  EXPECT_EQ(lora_expand_ref({v.data(), 16, nullptr, 8, 8, 4, &seg, 1}).code(),
            StatusCode::kInvalidArgument)
      << "null y";
}

}  // namespace
}  // namespace loraserve::kernels
