#include "memory/page_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "memory/kv_page_table.h"

namespace loraserve {
namespace {

TEST(PagePool, AllocateIsAllOrNothing) {
  PagePool pool(4);
  std::vector<int32_t> got;
  ASSERT_TRUE(pool.allocate(3, PageOwner::kKv, &got).ok());
  EXPECT_EQ(got, (std::vector<int32_t>{0, 1, 2}));
  Status s = pool.allocate(2, PageOwner::kAdapter, &got);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(got.size(), 3u);  // unchanged
  EXPECT_EQ(pool.stats().free, 1);
  EXPECT_EQ(pool.stats().kv, 3);
  EXPECT_EQ(pool.stats().adapter, 0);
}

TEST(PagePool, DoubleFreeAndBadIdsAreErrors) {
  PagePool pool(2);
  std::vector<int32_t> got;
  ASSERT_TRUE(pool.allocate(1, PageOwner::kAdapter, &got).ok());
  EXPECT_TRUE(pool.free(got[0]).ok());
  EXPECT_EQ(pool.free(got[0]).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.free(7).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.free(-1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.stats().free, 2);
}

// Random allocate/free sequences never hand out a page twice and return to
// an empty pool once everything is freed.
TEST(PagePool, RandomOperationsKeepOwnershipConsistent) {
  std::mt19937 rng(1234);
  PagePool pool(64);
  std::vector<std::vector<int32_t>> owners;
  for (int iter = 0; iter < 5000; ++iter) {
    if (owners.empty() || rng() % 2 == 0) {
      std::vector<int32_t> got;
      const int32_t n = static_cast<int32_t>(rng() % 9);
      const int32_t before = pool.num_free();
      Status s = pool.allocate(n, rng() % 2 ? PageOwner::kKv : PageOwner::kAdapter, &got);
      if (n > before) {
        EXPECT_FALSE(s.ok());
        EXPECT_EQ(pool.num_free(), before);
      } else {
        ASSERT_TRUE(s.ok());
        owners.push_back(got);
      }
    } else {
      const size_t i = rng() % owners.size();
      ASSERT_TRUE(pool.free_all(owners[i]).ok());
      owners.erase(owners.begin() + static_cast<long>(i));
    }
    std::set<int32_t> seen;
    int32_t held = 0;
    for (const auto& o : owners) {
      for (int32_t p : o) {
        EXPECT_TRUE(seen.insert(p).second) << "page " << p << " owned twice";
        EXPECT_NE(pool.owner(p), PageOwner::kFree);
        ++held;
      }
    }
    ASSERT_EQ(held + pool.num_free(), pool.num_pages());
    const PagePoolStats st = pool.stats();
    ASSERT_EQ(st.kv + st.adapter + st.free, st.total);
  }
  for (const auto& o : owners) ASSERT_TRUE(pool.free_all(o).ok());
  EXPECT_EQ(pool.num_free(), 64);
}

TEST(KvPageTable, GrowsByBlocksOfOnePagePerLayer) {
  PagePool pool(12);
  KvPageTable kv(&pool, /*page_tokens=*/4, /*num_layers=*/3);
  EXPECT_EQ(kv.pages_needed(7, 1), 3);
  ASSERT_TRUE(kv.ensure_capacity(7, 5).ok());  // 2 blocks x 3 layers
  EXPECT_EQ(kv.capacity_tokens(7), 8);
  EXPECT_EQ(pool.stats().kv, 6);
  ASSERT_TRUE(kv.ensure_capacity(7, 8).ok());  // still fits
  EXPECT_EQ(pool.stats().kv, 6);
  ASSERT_TRUE(kv.ensure_capacity(9, 4).ok());
  EXPECT_EQ(kv.ensure_capacity(9, 12).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(kv.capacity_tokens(9), 4);  // all-or-nothing

  std::vector<int32_t> indptr, ids;
  ASSERT_TRUE(kv.build_view({9, 7}, &indptr, &ids).ok());
  EXPECT_EQ(indptr, (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(ids.size(), 9u);
  EXPECT_EQ(kv.build_view({5}, &indptr, &ids).code(), StatusCode::kNotFound);

  kv.release(7);
  kv.release(9);
  EXPECT_EQ(pool.num_free(), 12);
}

}  // namespace
}  // namespace loraserve
