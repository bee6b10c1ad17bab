#include "common/thread_pool.h"

#include <algorithm>
#include <chrono>

namespace loraserve {

namespace {
// How long a worker spins for the next job (and the caller for the last
// worker) before sleeping on a condition variable; a decode step's ops
// follow each other closer than this.
constexpr auto kSpin = std::chrono::microseconds(100);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin a little, then sleep until the generation moves.
    auto deadline = std::chrono::steady_clock::now() + kSpin;
    while (generation_.load(std::memory_order_acquire) == seen &&
           std::chrono::steady_clock::now() < deadline) {
      for (int i = 0; i < 64; ++i) cpu_relax();
    }
    const std::function<void(int)>* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      seen = generation_.load(std::memory_order_acquire);
      if (stop_) return;
      job = job_;
    }
    (*job)(index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      if (caller_waiting_) done_.notify_one();
    }
  }
}

void ThreadPool::run_on_all(const std::function<void(int)>& fn) {
  if (workers_.empty()) {
    fn(0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  fn(0);
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  while (pending_.load(std::memory_order_acquire) != 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      std::unique_lock<std::mutex> lock(mu_);
      caller_waiting_ = true;
      done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
      caller_waiting_ = false;
      return;
    }
    for (int i = 0; i < 16; ++i) cpu_relax();
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t units = (n + grain - 1) / grain;
  if (units <= 1 || size() == 1) {
    fn(0, n);
    return;
  }
  // A few chunks per thread, taken in order from a shared counter: a worker
  // that wakes late, or a core the OS lends elsewhere for a moment, takes
  // fewer chunks instead of holding everyone up at the end.
  const int64_t chunk_units = (units + kChunksPerThread * size() - 1) / (kChunksPerThread * size());
  const int64_t chunks = (units + chunk_units - 1) / chunk_units;
  std::atomic<int64_t> next{0};
  run_on_all([&](int) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < chunks;
         c = next.fetch_add(1, std::memory_order_relaxed)) {
      const int64_t b = c * chunk_units * grain;
      const int64_t e = std::min(n, (c + 1) * chunk_units * grain);
      fn(b, e);
    }
  });
}

}  // namespace loraserve
