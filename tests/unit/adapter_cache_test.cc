#include "memory/adapter_cache.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <set>

namespace loraserve {
namespace {

constexpr int64_t kPageBytes = 64;

// A host "pool" the cache writes into, so tests can check what landed where.
class FakePool : public PoolWriter {
 public:
  explicit FakePool(int32_t pages) : bytes_(static_cast<size_t>(pages) * kPageBytes, 0) {}
  Status write_pages(const std::vector<int32_t>& pages, const void* src, size_t n) override {
    if (fail_next_) {
      fail_next_ = false;
      return internal_error("injected copy failure");
    }
    const char* s = static_cast<const char*>(src);
    for (size_t i = 0; i * kPageBytes < n; ++i) {
      std::memcpy(&bytes_[pages[i] * kPageBytes], s + i * kPageBytes,
                  std::min<size_t>(kPageBytes, n - i * kPageBytes));
    }
    return ok_status();
  }
  // Reads the image back through the page table.
  std::string read(const ResidentAdapter& r, size_t n) const {
    std::string out;
    for (size_t i = 0; i < n; ++i) out.push_back(bytes_[r.pages[i / kPageBytes] * kPageBytes + i % kPageBytes]);
    return out;
  }
  bool fail_next_ = false;

 private:
  std::vector<char> bytes_;
};

std::shared_ptr<AdapterImage> image(const std::string& id, int64_t bytes) {
  auto img = std::make_shared<AdapterImage>();
  img->id = id;
  img->dtype = DType::kF32;
  img->num_elems = bytes / 4;
  HostAllocator a = HostAllocator::malloc_allocator();
  img->data = a.allocate(img->num_bytes());
  img->free_data = a.free;
  for (size_t i = 0; i < img->num_bytes(); ++i) {
    static_cast<char*>(img->data)[i] = static_cast<char>(id[0] + i * 7);
  }
  return img;
}

TEST(AdapterCache, AcquireCopiesTheImageThroughItsPages) {
  PagePool pool(10);
  FakePool fake(10);
  AdapterCache cache(&pool, kPageBytes, &fake);
  auto a = image("a", 200);  // 4 pages, last one partly used
  auto r = cache.acquire(a);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->pages.size(), 4u);
  EXPECT_EQ(fake.read(**r, 200), std::string(static_cast<char*>(a->data), 200));
  EXPECT_EQ(cache.residency("a"), Residency::kPinned);
  EXPECT_EQ(pool.stats().adapter, 4);
  EXPECT_EQ(cache.stats().swap_ins, 1);
  EXPECT_EQ(cache.stats().bytes_copied, 200);
  // A second acquire shares the resident copy.
  ASSERT_TRUE(cache.acquire(a).ok());
  EXPECT_EQ(cache.stats().swap_ins, 1);
  ASSERT_TRUE(cache.release("a").ok());
  EXPECT_EQ(cache.residency("a"), Residency::kPinned);
  ASSERT_TRUE(cache.release("a").ok());
  EXPECT_EQ(cache.residency("a"), Residency::kResident);
  EXPECT_EQ(cache.release("a").code(), StatusCode::kFailedPrecondition);
}

TEST(AdapterCache, EvictsIdleLeastRecentlyUsedNeverPinned) {
  PagePool pool(8);
  FakePool fake(8);
  AdapterCache cache(&pool, kPageBytes, &fake);
  auto a = image("a", 128), b = image("b", 128), c = image("c", 128), d = image("d", 256);
  ASSERT_TRUE(cache.acquire(a).ok());
  ASSERT_TRUE(cache.acquire(b).ok());
  ASSERT_TRUE(cache.acquire(c).ok());
  ASSERT_TRUE(cache.release("b").ok());  // idle: b, then a
  ASSERT_TRUE(cache.release("a").ok());
  // d needs 4 pages, 2 free: evict the least recently released idle one (b).
  ASSERT_TRUE(cache.acquire(d).ok());
  EXPECT_EQ(cache.residency("b"), Residency::kMissing);
  EXPECT_EQ(cache.residency("a"), Residency::kResident);
  EXPECT_EQ(cache.residency("c"), Residency::kPinned);
  EXPECT_EQ(cache.stats().evictions, 1);
  // Nothing idle but a (2 pages); e needs 6: refused, nothing changes.
  auto e = image("e", 384);
  EXPECT_EQ(cache.acquire(e).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(cache.residency("a"), Residency::kResident);
  EXPECT_EQ(pool.num_free(), 0);
}

TEST(AdapterCache, PrefetchUsesFreePagesOnly) {
  PagePool pool(4);
  FakePool fake(4);
  AdapterCache cache(&pool, kPageBytes, &fake);
  ASSERT_TRUE(cache.acquire(image("a", 128)).ok());
  ASSERT_TRUE(cache.release("a").ok());
  EXPECT_EQ(cache.prefetch(image("b", 192)).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(cache.residency("a"), Residency::kResident);  // not evicted by a prefetch
  ASSERT_TRUE(cache.prefetch(image("c", 100)).ok());
  EXPECT_EQ(cache.residency("c"), Residency::kResident);
  EXPECT_EQ(cache.stats().prefetches, 1);
}

TEST(AdapterCache, AdmissionPlanNamesEvictionsWithoutChangingAnything) {
  PagePool pool(6);
  FakePool fake(6);
  AdapterCache cache(&pool, kPageBytes, &fake);
  auto a = image("a", 128), b = image("b", 128), c = image("c", 128);
  ASSERT_TRUE(cache.acquire(a).ok());
  ASSERT_TRUE(cache.acquire(b).ok());
  ASSERT_TRUE(cache.release("a").ok());
  ASSERT_TRUE(cache.release("b").ok());
  // 2 free; request needs 3 KV pages and c (2 pages): evict a, then b.
  AdmissionPlan p = cache.plan_admission(3, c.get());
  EXPECT_TRUE(p.admissible);
  EXPECT_EQ(p.adapter_pages, 2);
  EXPECT_EQ(p.evictions, (std::vector<std::string>{"a", "b"}));
  // Using b itself: b is not evicted and needs no pages; a alone suffices.
  p = cache.plan_admission(3, b.get());
  EXPECT_TRUE(p.admissible);
  EXPECT_EQ(p.adapter_pages, 0);
  EXPECT_EQ(p.evictions, (std::vector<std::string>{"a"}));
  p = cache.plan_admission(7, nullptr);
  EXPECT_FALSE(p.admissible);
  EXPECT_TRUE(p.evictions.empty());
  EXPECT_EQ(cache.stats().resident, 2);  // planning changed nothing
}

TEST(AdapterCache, FailedCopyLeavesNoTrace) {
  PagePool pool(4);
  FakePool fake(4);
  AdapterCache cache(&pool, kPageBytes, &fake);
  fake.fail_next_ = true;
  EXPECT_EQ(cache.acquire(image("a", 128)).status().code(), StatusCode::kInternal);
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(cache.residency("a"), Residency::kMissing);
}

TEST(AdapterCache, DropRefusesPinnedAdapters) {
  PagePool pool(4);
  FakePool fake(4);
  AdapterCache cache(&pool, kPageBytes, &fake);
  ASSERT_TRUE(cache.acquire(image("a", 64)).ok());
  EXPECT_EQ(cache.drop("a").code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(cache.release("a").ok());
  EXPECT_TRUE(cache.drop("a").ok());
  EXPECT_TRUE(cache.drop("never").ok());
  EXPECT_EQ(pool.num_free(), 4);
}

// Random acquire/release/prefetch/KV-pressure sequences: no page is ever
// owned twice, a pinned adapter is never evicted, the pool's counts add up,
// and releasing everything returns an empty pool.
TEST(AdapterCache, RandomOperationsKeepInvariants) {
  std::mt19937 rng(99);
  PagePool pool(40);
  FakePool fake(40);
  AdapterCache cache(&pool, kPageBytes, &fake);
  std::vector<std::shared_ptr<AdapterImage>> images;
  for (int i = 0; i < 12; ++i) images.push_back(image(std::string(1, static_cast<char>('a' + i)), 64 * (1 + i % 5) - 8));
  std::map<std::string, int> pins;
  std::vector<std::vector<int32_t>> kv_blocks;
  for (int iter = 0; iter < 4000; ++iter) {
    const int op = static_cast<int>(rng() % 5);
    auto& img = images[rng() % images.size()];
    if (op == 0 || op == 1) {
      auto r = cache.acquire(img);
      if (r.ok()) pins[img->id] += 1;
      else EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
    } else if (op == 2) {
      if (pins[img->id] > 0) {
        ASSERT_TRUE(cache.release(img->id).ok());
        pins[img->id] -= 1;
      } else {
        EXPECT_FALSE(cache.release(img->id).ok());
      }
    } else if (op == 3) {
      Status s = cache.prefetch(img);
      EXPECT_TRUE(s.ok() || s.code() == StatusCode::kResourceExhausted);
    } else {
      // KV pressure: take pages after evicting idle adapters, or give some back.
      if (rng() % 2 && !kv_blocks.empty()) {
        ASSERT_TRUE(pool.free_all(kv_blocks.back()).ok());
        kv_blocks.pop_back();
      } else {
        const int32_t n = 1 + static_cast<int32_t>(rng() % 4);
        cache.make_free(n);
        std::vector<int32_t> got;
        if (pool.allocate(n, PageOwner::kKv, &got).ok()) kv_blocks.push_back(got);
      }
    }
    // Invariants.
    std::set<int32_t> owned;
    int32_t adapter_pages = 0;
    for (const std::string& id : cache.resident_ids()) {
      const ResidentAdapter* r = cache.find(id);
      ASSERT_NE(r, nullptr);
      EXPECT_EQ(r->pins, pins[id]);
      for (int32_t p : r->pages) {
        ASSERT_TRUE(owned.insert(p).second) << "page " << p << " owned twice";
        ASSERT_EQ(pool.owner(p), PageOwner::kAdapter);
      }
      adapter_pages += static_cast<int32_t>(r->pages.size());
      ASSERT_EQ(fake.read(*r, r->image->num_bytes()),
                std::string(static_cast<const char*>(r->image->data), r->image->num_bytes()));
    }
    for (const auto& kv : pins) {
      if (kv.second > 0) {
        ASSERT_EQ(cache.residency(kv.first), Residency::kPinned) << kv.first;
      }
    }
    for (const auto& blk : kv_blocks) for (int32_t p : blk) ASSERT_TRUE(owned.insert(p).second);
    ASSERT_EQ(pool.stats().adapter, adapter_pages);
    ASSERT_EQ(pool.stats().kv + pool.stats().adapter + pool.stats().free, pool.num_pages());
  }
  for (auto& kv : pins) while (kv.second-- > 0) ASSERT_TRUE(cache.release(kv.first).ok());
  for (const auto& blk : kv_blocks) ASSERT_TRUE(pool.free_all(blk).ok());
  cache.make_free(pool.num_pages());
  EXPECT_EQ(pool.num_free(), pool.num_pages());
  EXPECT_EQ(cache.stats().resident, 0);
}

}  // namespace
}  // namespace loraserve
