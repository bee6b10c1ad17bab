// ThreadPool: a fixed set of workers that run one parallel_for at a time,
// the calling thread taking part. The cpu-bf16 backend runs every op of a
// step through one pool (sized by --threads), so threads are not created
// per op and no two libraries' pools fight over the cores.
//
// A step issues a few hundred parallel_for calls, each a few tens of
// microseconds to milliseconds long, so workers spin briefly before they
// sleep: waking a sleeping thread costs about as much as a small op. The
// caller spins briefly for stragglers too, then sleeps: on a machine shared
// with other processes a descheduled worker must not cost a whole time
// slice of spinning.
//
// Threading: parallel_for is called from one thread at a time (the engine's
// step loop); it returns when every chunk has run.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace loraserve {

class ThreadPool {
 public:
  // `threads` counts the caller: 1 runs everything inline. 0 means one per
  // online CPU.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(begin, end) over [0, n) in contiguous chunks, each a multiple
  // of `grain` long except the last, about kChunksPerThread per thread,
  // handed out in order to whichever thread is free. 16 rather than 4: on
  // the 2-vCPU VM we measure on, one vCPU ran the same GEMM 7-15% slower
  // than the other, and with 4 chunks a thread the faster one idled at the
  // end of most ops (B=16 decode steps 3-4% faster on average with 16).
  static constexpr int64_t kChunksPerThread = 16;
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Runs fn(worker) once on each of size() threads (worker 0 is the caller).
  void run_on_all(const std::function<void(int)>& fn);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;  // the caller sleeps here when workers are slow
  bool caller_waiting_ = false;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  bool stop_ = false;
};

}  // namespace loraserve
