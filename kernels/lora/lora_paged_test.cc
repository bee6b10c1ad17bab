// Paged LoRA (weights read through page tables) against the contiguous
// reference and a naive double-precision loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "common/dtype.h"
#include "kernels/gemm/gemm_bf16.h"
#include "kernels/lora/lora.h"
#include "kernels/lora/lora_paged.h"

namespace loraserve::kernels {
namespace {

struct Adapter {
  int32_t rank;
  float scale;
  std::vector<float> a, bt;   // contiguous [rank, in], [rank, out]
  std::vector<int32_t> pages; // where its image (A then Bt) sits in the pool
};

TEST(LoraPaged, MatchesContiguousAndNaiveWithRowsCrossingPages) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t in = 96, out = 80, tokens = 23;
  const int64_t page_elems = 100;  // rows of 96/80 elements straddle page boundaries
  const int32_t num_pages = 200;
  std::vector<float> pool(static_cast<size_t>(num_pages) * page_elems,
                          std::numeric_limits<float>::quiet_NaN());
  std::vector<int32_t> free_pages(num_pages);
  std::iota(free_pages.begin(), free_pages.end(), 0);
  std::shuffle(free_pages.begin(), free_pages.end(), rng);

  std::vector<Adapter> adapters;
  for (int32_t rank : {8, 16, 64, 3}) {
    Adapter ad;
    ad.rank = rank;
    ad.scale = 2.0f / rank;
    for (int64_t i = 0; i < rank * in; ++i) ad.a.push_back(nd(rng) * 0.1f);
    for (int64_t i = 0; i < rank * out; ++i) ad.bt.push_back(nd(rng) * 0.1f);
    std::vector<float> img = ad.a;
    img.insert(img.end(), ad.bt.begin(), ad.bt.end());
    const int64_t n_pages = (static_cast<int64_t>(img.size()) + page_elems - 1) / page_elems;
    for (int64_t p = 0; p < n_pages; ++p) {
      ad.pages.push_back(free_pages.back());
      free_pages.pop_back();
      for (int64_t e = 0; e < page_elems && p * page_elems + e < static_cast<int64_t>(img.size()); ++e) {
        pool[ad.pages.back() * page_elems + e] = img[p * page_elems + e];
      }
    }
    adapters.push_back(std::move(ad));
  }
  // Ragged segments; rows 0-1 and 20-22 use no adapter.
  const std::vector<std::pair<int32_t, int32_t>> rows = {{2, 3}, {3, 9}, {9, 10}, {10, 20}};
  std::vector<float> x(tokens * in);
  for (auto& v : x) v = nd(rng);
  std::vector<float> y0(tokens * out);
  for (auto& v : y0) v = nd(rng);

  std::vector<PagedLoraSegment> paged;
  std::vector<LoraSegment> flat;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Adapter& ad = adapters[i];
    paged.push_back(PagedLoraSegment{rows[i].first, rows[i].second, ad.rank, ad.scale,
                                     ad.pages.data(), 0, ad.rank * in});
    flat.push_back(LoraSegment{rows[i].first, rows[i].second, ad.rank, ad.scale, ad.a.data(),
                               ad.bt.data()});
  }
  const int64_t vs = 64;
  std::vector<float> v_paged(tokens * vs, 0.0f), v_flat(tokens * vs, 0.0f);
  std::vector<float> y_paged = y0, y_flat = y0;

  PagedLoraShrinkParams ps{x.data(), in, v_paged.data(), vs, in, tokens, pool.data(), page_elems,
                           paged.data(), static_cast<int32_t>(paged.size())};
  ASSERT_TRUE(lora_shrink_paged_ref(ps).ok());
  PagedLoraExpandParams pe{v_paged.data(), vs, y_paged.data(), out, out, tokens, pool.data(),
                           page_elems, paged.data(), static_cast<int32_t>(paged.size())};
  ASSERT_TRUE(lora_expand_paged_ref(pe).ok());
  LoraShrinkParams fs{x.data(), in, v_flat.data(), vs, in, tokens, flat.data(),
                      static_cast<int32_t>(flat.size())};
  ASSERT_TRUE(lora_shrink_ref(fs).ok());
  LoraExpandParams fe{v_flat.data(), vs, y_flat.data(), out, out, tokens, flat.data(),
                      static_cast<int32_t>(flat.size())};
  ASSERT_TRUE(lora_expand_ref(fe).ok());

  for (int64_t t = 0; t < tokens; ++t) {
    int seg = -1;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (t >= rows[i].first && t < rows[i].second) seg = static_cast<int>(i);
    }
    for (int64_t o = 0; o < out; ++o) {
      double want = y0[t * out + o];
      if (seg >= 0) {
        const Adapter& ad = adapters[seg];
        for (int32_t j = 0; j < ad.rank; ++j) {
          double s = 0;
          for (int64_t c = 0; c < in; ++c) s += double(x[t * in + c]) * ad.a[j * in + c];
          want += double(ad.scale) * s * ad.bt[j * out + o];
        }
      }
      ASSERT_NEAR(y_paged[t * out + o], want, 1e-4) << "token " << t << " col " << o;
      ASSERT_NEAR(y_paged[t * out + o], y_flat[t * out + o], 1e-4);
      if (seg < 0) {
        ASSERT_EQ(y_paged[t * out + o], y0[t * out + o]);  // untouched rows
      }
    }
  }
}

// The cpu-bf16 forms over an f32 image and over a bf16 image, every kernel
// this CPU runs, in two row slices (as two threads take them), against the
// reference over an f32 pool that holds the same values (the bf16 image's
// elements widened): only the order of additions differs. Rows of 96/80
// elements straddle 100-element pages; ranks 3..64; rows 0-1 and 20-22 use
// no adapter and must come back untouched.
TEST(LoraPagedCpu, F32AndBf16ImagesMatchTheReferenceOnEveryIsa) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t in = 96, out = 80, tokens = 23, page_elems = 100, vs = 64;
  const int32_t num_pages = 200;
  // The pool's values are bf16-exact, so the f32 pool and the bf16 pool hold the same numbers.
  std::vector<uint16_t> pool16(static_cast<size_t>(num_pages) * page_elems);
  for (auto& e : pool16) e = f32_to_bf16(nd(rng) * 0.1f);
  std::vector<float> pool32(pool16.size());
  for (size_t i = 0; i < pool16.size(); ++i) pool32[i] = bf16_to_f32(pool16[i]);
  std::vector<int32_t> order(num_pages);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  const std::vector<std::pair<int32_t, int32_t>> rows = {{2, 3}, {3, 9}, {9, 10}, {10, 20}};
  const std::vector<int32_t> ranks = {8, 16, 64, 3};
  std::vector<PagedLoraSegment> segs;
  size_t next_page = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t elems = ranks[i] * (in + out);
    const size_t pages = static_cast<size_t>((elems + page_elems - 1) / page_elems);
    segs.push_back(PagedLoraSegment{rows[i].first, rows[i].second, ranks[i], 2.0f / ranks[i],
                                    order.data() + next_page, 0, ranks[i] * in});
    next_page += pages;
  }
  std::vector<float> x(tokens * in), y0(tokens * out);
  for (auto& v : x) v = nd(rng);
  for (auto& v : y0) v = nd(rng);

  std::vector<float> v_ref(tokens * vs, 0.0f), y_ref = y0;
  const int32_t ns = static_cast<int32_t>(segs.size());
  ASSERT_TRUE(lora_shrink_paged_ref({x.data(), in, v_ref.data(), vs, in, tokens, pool32.data(),
                                     page_elems, segs.data(), ns}).ok());
  ASSERT_TRUE(lora_expand_paged_ref({v_ref.data(), vs, y_ref.data(), out, out, tokens,
                                     pool32.data(), page_elems, segs.data(), ns}).ok());

  auto run = [&](auto* pool, CpuIsa isa) {
    using W = std::remove_const_t<std::remove_pointer_t<decltype(pool)>>;
    std::vector<float> v(tokens * vs, 0.0f), y = y0;
    const PagedLoraShrinkParamsOver<W> sp{x.data(), in, v.data(), vs, in, tokens, pool,
                                          page_elems, segs.data(), ns};
    const PagedLoraExpandParamsOver<W> ep{v.data(), vs, y.data(), out, out, tokens, pool,
                                          page_elems, segs.data(), ns};
    EXPECT_TRUE(validate_lora_shrink_paged(sp).ok());
    EXPECT_TRUE(validate_lora_expand_paged(ep).ok());
    for (const auto& [b, e] : {std::pair<int64_t, int64_t>{0, 9}, {9, tokens}}) {
      lora_shrink_paged_cpu(sp, static_cast<int>(isa), b, e);
      lora_expand_paged_cpu(ep, static_cast<int>(isa), b, e);
    }
    return y;
  };
  for (const CpuIsa isa : runnable_cpu_isas()) {
    SCOPED_TRACE(cpu_isa_name(isa));
    const std::vector<float> y32 = run(pool32.data(), isa);
    const std::vector<float> y16 = run(pool16.data(), isa);
    for (int64_t t = 0; t < tokens; ++t) {
      const bool adapted = t >= 2 && t < 20;
      for (int64_t o = 0; o < out; ++o) {
        const size_t i = static_cast<size_t>(t * out + o);
        if (!adapted) {
          ASSERT_EQ(y16[i], y0[i]) << "token " << t;
          ASSERT_EQ(y32[i], y0[i]) << "token " << t;
          continue;
        }
        ASSERT_NE(y_ref[i], y0[i]) << "token " << t << " col " << o;  // the adapter did add
        ASSERT_NEAR(y32[i], y_ref[i], 1e-5 * (1 + std::fabs(y_ref[i]))) << "token " << t << " col " << o;
        ASSERT_NEAR(y16[i], y_ref[i], 1e-5 * (1 + std::fabs(y_ref[i]))) << "token " << t << " col " << o;
      }
    }
  }
}

TEST(LoraPaged, RejectsBadSegments) {
  std::vector<float> pool(100), x(10), v(10), y(10);
  std::vector<int32_t> pages = {0};
  PagedLoraSegment s{0, 2, 4, 1.0f, pages.data(), 0, 0};
  PagedLoraShrinkParams p{x.data(), 5, v.data(), 2, 5, 2, pool.data(), 100, &s, 1};
  EXPECT_EQ(lora_shrink_paged_ref(p).code(), StatusCode::kInvalidArgument);  // rank 4 > v_stride 2
  s.rank = 2;
  s.end = 3;  // beyond num_tokens
  EXPECT_EQ(lora_shrink_paged_ref(p).code(), StatusCode::kInvalidArgument);
  s.end = 2;
  s.page_ids = nullptr;
  EXPECT_EQ(lora_shrink_paged_ref(p).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve::kernels
