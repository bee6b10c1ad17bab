// gemm_bf16 on every instruction set this CPU has, against a double loop
// over the same bf16 weights (and, for avx512bf16, the same bf16-rounded x).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/gemm_bf16.h"
#include "kernels/gemm/gemm_bf16_panels.h"

namespace loraserve::kernels {
namespace {

struct Case {
  int64_t m, n, k, ldx, ldy;
};

// y[i, j] for j in [nb, ne) against a double sum over bf16 W (and bf16 x on
// avx512bf16); columns outside [nb, ne) and padding must keep their values.
// `panels`: the kernel reads W packed by pack_bf16_panels; the sum does not.
void check(CpuIsa isa, const Case& c, int64_t nb, int64_t ne, bool accumulate, uint32_t seed,
           bool panels = false) {
  SCOPED_TRACE(std::string(cpu_isa_name(isa)) + (panels ? " panels" : "") + " m=" + std::to_string(c.m) + " n=" +
               std::to_string(c.n) + " k=" + std::to_string(c.k) + " cols [" +
               std::to_string(nb) + "," + std::to_string(ne) + ")" + (accumulate ? " acc" : ""));
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(c.m * c.ldx));
  for (float& v : x) v = d(rng);
  std::vector<uint16_t> w(static_cast<size_t>(c.n * c.k));
  for (uint16_t& v : w) v = f32_to_bf16(d(rng) * 0.05f);
  std::vector<uint16_t> xb(static_cast<size_t>(c.m * c.k));
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t t = 0; t < c.k; ++t) xb[i * c.k + t] = f32_to_bf16(x[i * c.ldx + t]);
  std::vector<float> y0(static_cast<size_t>(c.m * c.ldy));
  for (float& v : y0) v = d(rng);
  std::vector<float> y = y0;
  std::vector<uint16_t> packed;
  if (panels) {
    packed.assign(static_cast<size_t>(bf16_panels_size(c.n, c.k)), 0xffff);  // NaN unless written
    ASSERT_TRUE(pack_bf16_panels(w.data(), c.n, c.k, packed.data(), 0, bf16_panel_count(c.n)).ok());
  }

  GemmBf16Params p;
  p.x = x.data();
  p.xb = xb.data();
  p.w = panels ? packed.data() : w.data();
  p.w_panels = panels;
  p.y = y.data();
  p.m = c.m;
  p.n = c.n;
  p.k = c.k;
  p.ldx = c.ldx;
  p.ldy = c.ldy;
  p.n_begin = nb;
  p.n_end = ne;
  p.accumulate = accumulate;
  ASSERT_TRUE(gemm_bf16_cpu(p, isa).ok());

  const bool bf16_x = isa == CpuIsa::kAvx512Bf16;
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.ldy; ++j) {
      const float got = y[i * c.ldy + j];
      if (j < nb || j >= ne) {
        ASSERT_EQ(got, y0[i * c.ldy + j]) << "column " << j << " outside the range changed";
        continue;
      }
      double want = accumulate ? y0[i * c.ldy + j] : 0.0, mag = std::fabs(want);
      for (int64_t t = 0; t < c.k; ++t) {
        const double xv = bf16_x ? bf16_to_f32(xb[i * c.k + t]) : x[i * c.ldx + t];
        const double term = xv * bf16_to_f32(w[j * c.k + t]);
        want += term;
        mag += std::fabs(term);
      }
      // f32 accumulation in a different order: a few ulps of the magnitude.
      ASSERT_NEAR(got, want, 1e-6 * mag + 1e-6) << "y[" << i << "," << j << "]";
    }
  }
}

TEST(GemmBf16, EveryIsaMatchesADoubleLoop) {
  // Shapes hit full and partial register tiles (4x6 / 2x4), k tails below
  // one vector, k past one 2048 block (prefill blocking), m past 16 and 128.
  const Case cases[] = {{1, 1, 1, 1, 1},      {1, 7, 31, 31, 7},    {3, 13, 33, 40, 16},
                        {4, 6, 64, 64, 6},    {5, 25, 100, 100, 30}, {16, 50, 256, 256, 50},
                        {17, 19, 2100, 2100, 19}, {130, 9, 70, 72, 9}};
  uint32_t seed = 1;
  for (CpuIsa isa : runnable_cpu_isas()) {
    for (const Case& c : cases) {
      check(isa, c, 0, c.n, false, seed++);
      check(isa, c, 0, c.n, true, seed++);
      if (c.n > 2) check(isa, c, 1, c.n - 1, false, seed++);  // a thread's column range
    }
  }
}

TEST(GemmBf16, PanelsMatchADoubleLoop) {
  if (detect_cpu_isa() != CpuIsa::kAvx512Bf16) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  // Row tiles of 8 and their remainders (1..7), panel groups of 3 and their
  // remainders, a last panel of 2..15 columns, k of one pair, k past one
  // 256 block (blocked only above 8 rows), m past a 128-row chunk.
  const Case cases[] = {{1, 1, 2, 2, 1},        {1, 50, 34, 34, 50},     {3, 16, 64, 70, 20},
                        {8, 48, 2, 2, 48},       {9, 100, 2050, 2050, 104}, {16, 40, 256, 256, 40},
                        {17, 64, 1026, 1026, 64}, {37, 33, 98, 100, 40},  {130, 50, 70, 72, 50}};
  uint32_t seed = 100;
  for (const Case& c : cases) {
    check(CpuIsa::kAvx512Bf16, c, 0, c.n, false, seed++, true);
    check(CpuIsa::kAvx512Bf16, c, 0, c.n, true, seed++, true);
    // A thread's range: from a panel boundary to another, or to n.
    if (c.n > 32) check(CpuIsa::kAvx512Bf16, c, 16, 32, false, seed++, true);
    if (c.n > 16) check(CpuIsa::kAvx512Bf16, c, 16, c.n, true, seed++, true);
  }
}

TEST(GemmBf16, PanelsHoldEveryRowAndZeroPadding) {
  const int64_t n = 21, k = 6;  // two panels, the second 5 rows and 11 of padding
  std::vector<uint16_t> w(n * k);
  for (size_t i = 0; i < w.size(); ++i) w[i] = f32_to_bf16(static_cast<float>(i) - 50.0f);
  std::vector<uint16_t> packed(static_cast<size_t>(bf16_panels_size(n, k)), 0xffff);
  ASSERT_EQ(packed.size(), 32u * 6u);
  // Two calls, one panel each (how the backend packs on its threads).
  ASSERT_TRUE(pack_bf16_panels(w.data(), n, k, packed.data(), 1, 2).ok());
  ASSERT_TRUE(pack_bf16_panels(w.data(), n, k, packed.data(), 0, 1).ok());
  // Hand-placed: row 17, k 3 sits in panel 1, pair 1, column 1, odd half.
  EXPECT_EQ(packed[(1 * 3 * 16 + 1 * 16 + 1) * 2 + 1], w[17 * k + 3]);
  std::vector<float> row(k);
  for (int64_t r = 0; r < n; ++r) {
    bf16_panels_row_f32(packed.data(), k, r, row.data());
    for (int64_t t = 0; t < k; ++t) ASSERT_EQ(row[t], bf16_to_f32(w[r * k + t])) << r << "," << t;
  }
  for (int64_t r = n; r < 32; ++r) {
    bf16_panels_row_f32(packed.data(), k, r, row.data());
    for (int64_t t = 0; t < k; ++t) ASSERT_EQ(row[t], 0.0f) << "padding row " << r;
  }
}

TEST(GemmBf16, PanelsRefuseWhatTheyCannotRun) {
  std::vector<uint16_t> w(64 * 4), packed(64 * 4);
  EXPECT_FALSE(pack_bf16_panels(w.data(), 64, 3, packed.data(), 0, 4).ok());  // odd k
  EXPECT_FALSE(pack_bf16_panels(w.data(), 64, 4, packed.data(), 0, 5).ok());  // past the panels
  std::vector<float> x(4), y(64);
  std::vector<uint16_t> xb(4);
  GemmBf16Params p;
  p.x = x.data();
  p.xb = xb.data();
  p.w = packed.data();
  p.w_panels = true;
  p.y = y.data();
  p.m = 1;
  p.n = 64;
  p.k = 4;
  EXPECT_FALSE(gemm_bf16_cpu(p, CpuIsa::kScalar).ok());  // only the VDPBF16PS kernel reads panels
  p.n_begin = 8;                                          // inside a panel
  EXPECT_FALSE(gemm_bf16_cpu(p, CpuIsa::kAvx512Bf16).ok());
  p.n_begin = 16;
  p.n_end = 40;
  EXPECT_FALSE(gemm_bf16_cpu(p, CpuIsa::kAvx512Bf16).ok());
  p.k = 3;
  p.n_begin = 0;
  p.n_end = -1;
  EXPECT_FALSE(gemm_bf16_cpu(p, CpuIsa::kAvx512Bf16).ok());
}

TEST(GemmBf16, HandValues) {
  // x = [1, 2, 3], W rows [1, 0, -1] and [0.5, 0.5, 0.5]: y = [1 - 3, 3] = [-2, 3].
  const std::vector<float> x = {1, 2, 3};
  std::vector<uint16_t> xb = {f32_to_bf16(1), f32_to_bf16(2), f32_to_bf16(3)};
  const std::vector<uint16_t> w = {f32_to_bf16(1), f32_to_bf16(0), f32_to_bf16(-1),
                                   f32_to_bf16(0.5f), f32_to_bf16(0.5f), f32_to_bf16(0.5f)};
  for (CpuIsa isa : runnable_cpu_isas()) {
    std::vector<float> y(2, std::numeric_limits<float>::quiet_NaN());
    GemmBf16Params p;
    p.x = x.data();
    p.xb = xb.data();
    p.w = w.data();
    p.y = y.data();
    p.m = 1;
    p.n = 2;
    p.k = 3;
    ASSERT_TRUE(gemm_bf16_cpu(p, isa).ok());
    EXPECT_EQ(y, (std::vector<float>{-2.0f, 3.0f})) << cpu_isa_name(isa);
  }
}

TEST(GemmBf16, RefusesBadArguments) {
  std::vector<uint16_t> w(4);
  std::vector<float> x(4), y(4);
  GemmBf16Params p;
  p.x = x.data();
  p.w = w.data();
  p.y = y.data();
  p.m = 1;
  p.n = 2;
  p.k = 2;
  p.n_begin = 1;
  p.n_end = 3;  // past n
  EXPECT_FALSE(gemm_bf16_cpu(p, CpuIsa::kScalar).ok());
  p.n_end = 2;
  p.xb = nullptr;
  EXPECT_FALSE(gemm_bf16_cpu(p, CpuIsa::kAvx512Bf16).ok());  // needs bf16 x
  EXPECT_TRUE(gemm_bf16_cpu(p, CpuIsa::kScalar).ok());
}

TEST(CpuIsa, ParsesAndRefusesWhatTheCpuLacks) {
  EXPECT_EQ(*parse_cpu_isa("auto"), detect_cpu_isa());
  EXPECT_EQ(*parse_cpu_isa("scalar"), CpuIsa::kScalar);
  EXPECT_FALSE(parse_cpu_isa("sse9").ok());
  if (detect_cpu_isa() != CpuIsa::kAvx512Bf16) {
    EXPECT_FALSE(parse_cpu_isa("avx512bf16").ok());
  }
}

TEST(CpuVectorOps, DotAndAxpyMatchScalar) {
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int64_t n : {1, 7, 16, 33, 1000}) {
    std::vector<float> a(n), b(n);
    for (auto& v : a) v = d(rng);
    for (auto& v : b) v = d(rng);
    double want = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) {
      want += double(a[i]) * b[i];
      mag += std::fabs(double(a[i]) * b[i]);
    }
    for (CpuIsa isa : runnable_cpu_isas()) {
      EXPECT_NEAR(dot_f32(a.data(), b.data(), n, isa), want, 1e-6 * mag) << cpu_isa_name(isa);
      std::vector<float> y = b;
      axpy_f32(0.5f, a.data(), y.data(), n, isa);
      for (int64_t i = 0; i < n; ++i) ASSERT_FLOAT_EQ(y[i], b[i] + 0.5f * a[i]) << cpu_isa_name(isa);
    }
  }
}

// GQA scores, d = 64: out[h * n + j] = scale * dot(q + 64 h, rows[j] + offset)
// for 1..4 heads, against a double sum; lengths around the 4-head kernel's
// blocks of 4 rows (and tails), over f32 and bf16 rows.
template <typename T>
double widened(T v) {
  if constexpr (sizeof(T) == 2) {
    return bf16_to_f32(v);
  } else {
    return v;
  }
}

template <typename T>
void check_dot_rows_heads(CpuIsa isa) {
  std::mt19937 rng(11);
  std::normal_distribution<float> d(0.0f, 1.0f);
  const int64_t row_len = 200, offset = 70;  // a head's slice inside a longer row
  for (int heads = 1; heads <= 4; ++heads) {
    for (int64_t n : {1, 3, 4, 5, 8, 9, 15, 16, 17, 31, 33, 40}) {
      SCOPED_TRACE(std::string(cpu_isa_name(isa)) + (sizeof(T) == 2 ? " bf16" : " f32") +
                   " heads=" + std::to_string(heads) + " n=" + std::to_string(n));
      std::vector<float> q(static_cast<size_t>(heads * 64));
      for (auto& v : q) v = d(rng);
      std::vector<std::vector<T>> store(static_cast<size_t>(n), std::vector<T>(row_len));
      std::vector<const T*> rows;
      for (auto& r : store) {
        for (auto& v : r) {
          if constexpr (sizeof(T) == 2) {
            v = f32_to_bf16(d(rng));
          } else {
            v = d(rng);
          }
        }
        rows.push_back(r.data());
      }
      std::shuffle(rows.begin(), rows.end(), rng);  // scattered, as paged rows are
      const float scale = 0.125f;
      std::vector<float> out(static_cast<size_t>(heads * n), NAN);
      dot_rows_heads(q.data(), heads, rows.data(), offset, n, 64, scale, out.data(), isa);
      for (int h = 0; h < heads; ++h) {
        for (int64_t j = 0; j < n; ++j) {
          double want = 0, mag = 0;
          for (int64_t i = 0; i < 64; ++i) {
            const double kv = widened(rows[j][offset + i]);
            want += double(q[h * 64 + i]) * kv;
            mag += std::fabs(double(q[h * 64 + i]) * kv);
          }
          ASSERT_NEAR(out[h * n + j], scale * want, 1e-5 * scale * mag + 1e-30)
              << "h " << h << " j " << j;
        }
      }
    }
  }
}

TEST(CpuVectorOps, DotRowsHeadsMatchesADoubleSum) {
  for (CpuIsa isa : runnable_cpu_isas()) {
    check_dot_rows_heads<float>(isa);
    check_dot_rows_heads<uint16_t>(isa);
  }
}

}  // namespace
}  // namespace loraserve::kernels
