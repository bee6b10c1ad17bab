#include "common/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <vector>

namespace loraserve {
namespace {

TEST(ThreadPool, EveryIndexRunsExactlyOnceInGrainAlignedChunks) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 5, 24, 100, 1001}) {
      for (int64_t grain : {1, 6, 24}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::mutex mu;
        std::vector<std::pair<int64_t, int64_t>> chunks;
        pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
          std::lock_guard<std::mutex> lock(mu);
          chunks.emplace_back(b, e);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << i;
        EXPECT_LE(chunks.size(), static_cast<size_t>(ThreadPool::kChunksPerThread * threads));
        for (auto [b, e] : chunks) {
          EXPECT_EQ(b % grain, 0) << "chunk [" << b << "," << e << ")";
          EXPECT_TRUE(e == n || e % grain == 0) << "chunk [" << b << "," << e << ")";
        }
      }
    }
  }
}

TEST(ThreadPool, RunOnAllUsesEveryWorkerOnceAndManyRoundsInARow) {
  ThreadPool pool(4);
  for (int round = 0; round < 300; ++round) {  // back to back: spinning and sleeping workers
    std::vector<std::atomic<int>> seen(4);
    pool.run_on_all([&](int w) { seen[static_cast<size_t>(w)]++; });
    for (int w = 0; w < 4; ++w) ASSERT_EQ(seen[static_cast<size_t>(w)].load(), 1) << round;
  }
}

TEST(ThreadPool, WorkersReallyRunConcurrently) {
  // Every worker waits for all others inside one job: a pool that ran jobs
  // one after another would never get past the barrier.
  ThreadPool pool(3);
  std::atomic<int> arrived{0};
  pool.run_on_all([&](int) {
    arrived++;
    while (arrived.load() < 3) {
    }
  });
  EXPECT_EQ(arrived.load(), 3);
}

}  // namespace
}  // namespace loraserve
