// The SIMT engine: runs a kernel launch's blocks one after another on the
// calling OS thread; inside a block every CUDA thread is a fiber
// (Boost.Context fcontext: a stack switch of a few registers, far cheaper
// than ucontext's signal-mask syscalls).
//
// Scheduling. Fibers switch only at synchronisation points
// (__syncthreads*, __syncwarp, shuffles, votes) and at thread exit, so all
// code between two sync points runs atomically, and plain read-modify-write
// "atomics" are exact. A fiber that reaches a sync point marks itself
// blocked and switches straight to the next runnable fiber (round robin over
// a bitmap, no scheduler fiber in between). The last arriver of a barrier or
// warp exchange releases the others and carries on without a switch.
//
// Barriers count only threads that have not exited, as Volta+ hardware does
// when the early return is warp-uniform. Warp exchanges complete when every
// non-exited lane of the caller's mask is waiting at a warp-level operation;
// results are computed at that moment into per-lane slots, so a lane that
// resumes later cannot see values from a newer exchange. If nothing can run
// while threads are still alive (e.g. a __syncthreads inside a divergent
// branch), the launch aborts with a message: that is a hang on real hardware.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <boost/context/detail/fcontext.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "lsemu_internal.h"

namespace ctxd = boost::context::detail;

namespace lsemu::detail {

#define LSEMU_TLS __thread __attribute__((tls_model("initial-exec")))
LSEMU_TLS uint3 tl_thread_idx = {0, 0, 0};
LSEMU_TLS uint3 tl_block_idx = {0, 0, 0};
LSEMU_TLS dim3 tl_block_dim = dim3(1, 1, 1);
LSEMU_TLS dim3 tl_grid_dim = dim3(1, 1, 1);
LSEMU_TLS void* tl_dynamic_smem = nullptr;

namespace {

constexpr int kMaxThreads = kMaxThreadsPerBlock;
constexpr int kMaxWords = kMaxThreads / 64;
constexpr int kMaxWarps = kMaxThreads / 32;

std::atomic<unsigned long long> g_launches{0}, g_blocks{0}, g_threads{0}, g_switches{0};

struct WarpState {
  uint32_t live = 0;     // lanes that have not exited
  uint32_t waiting = 0;  // lanes blocked in a warp-level operation
  uint32_t voting = 0;   // waiting lanes whose operation is a vote
  uint32_t mask[32];     // each waiting lane's participation mask (incl. itself)
  int32_t op[32];
  int32_t src[32];       // shuffle source lane, -1: keep own value
  uint64_t val[32];      // posted value
  uint64_t res[32];      // result, written at release
};

class Engine;
LSEMU_TLS Engine* tl_running = nullptr;  // the engine inside a launch on this thread

class Engine {
 public:
  Engine() {
    const long page = sysconf(_SC_PAGESIZE);
    size_t kb = 128;
    if (const char* env = std::getenv("LSEMU_STACK_KB")) {
      const long v = std::atol(env);
      if (v >= 16 && v <= 65536) kb = static_cast<size_t>(v);
    }
    guard_ = static_cast<size_t>(page);
    stack_size_ = (kb * 1024 + guard_ - 1) / guard_ * guard_;
    stride_ = stack_size_ + guard_;
    // One reservation for all stacks, reused by every block; pages are only
    // backed once touched. A PROT_NONE page below each stack turns an
    // overflow into a fault instead of silent corruption of a neighbour.
    void* p = mmap(nullptr, stride_ * kMaxThreads, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return;
    region_ = static_cast<char*>(p);
    for (int i = 0; i < kMaxThreads; ++i) mprotect(region_ + i * stride_, guard_, PROT_NONE);
  }
  ~Engine() {
    if (region_) munmap(region_, stride_ * kMaxThreads);
    std::free(smem_);
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  bool ok() const { return region_ != nullptr; }

  bool reserve_smem(size_t bytes) {
    const size_t want = bytes < 16 ? 16 : (bytes + 15) / 16 * 16;
    if (want <= smem_cap_) return true;
    void* p = std::aligned_alloc(64, (want + 63) / 64 * 64);
    if (!p) return false;
    std::free(smem_);
    smem_ = p;
    smem_cap_ = want;
    return true;
  }

  void run(const LaunchSpec& s) {
    spec_ = &s;
    const unsigned bx = s.block.x, by = s.block.y;
    n_ = static_cast<int>(bx * by * s.block.z);
    nwords_ = (n_ + 63) / 64;
    nwarps_ = (n_ + 31) / 32;
    for (int t = 0; t < n_; ++t) {
      const unsigned u = static_cast<unsigned>(t);
      tidx_[t] = make_uint3(u % bx, (u / bx) % by, u / (bx * by));
    }
    tl_block_dim = s.block;
    tl_grid_dim = s.grid;
    tl_dynamic_smem = smem_;
    tl_running = this;
    unsigned long long blocks = 0;
    for (unsigned z = 0; z < s.grid.z; ++z) {
      for (unsigned y = 0; y < s.grid.y; ++y) {
        for (unsigned x = 0; x < s.grid.x; ++x) {
          tl_block_idx = make_uint3(x, y, z);
          std::memset(smem_, 0xFF, s.smem_bytes);
          run_block();
          ++blocks;
        }
      }
    }
    tl_running = nullptr;
    tl_thread_idx = make_uint3(0, 0, 0);
    tl_block_idx = make_uint3(0, 0, 0);
    tl_block_dim = dim3(1, 1, 1);
    tl_grid_dim = dim3(1, 1, 1);
    tl_dynamic_smem = nullptr;
    g_launches.fetch_add(1, std::memory_order_relaxed);
    g_blocks.fetch_add(blocks, std::memory_order_relaxed);
    g_threads.fetch_add(blocks * static_cast<unsigned long long>(n_), std::memory_order_relaxed);
    g_switches.fetch_add(switches_, std::memory_order_relaxed);
    switches_ = 0;
  }

  int barrier(int op, int pred) {
    const int me = cur_;
    clear_runnable(me);
    ++bar_waiting_;
    bar_true_ += pred != 0;
    if (bar_waiting_ == live_count_) {
      release_barrier();
    } else {
      wait();
    }
    switch (op) {
      case kBarCount: return bar_result_true_;
      case kBarAnd: return bar_result_true_ == bar_result_n_;
      case kBarOr: return bar_result_true_ > 0;
      default: return 0;
    }
  }

  uint64_t warp_op(unsigned mask, int op, uint64_t bits, int arg, int width) {
    const int me = cur_;
    const int lane = me & 31;
    WarpState& w = warps_[me >> 5];
    w.mask[lane] = mask | (1u << lane);
    w.op[lane] = op;
    w.val[lane] = bits;
    w.src[lane] = shuffle_source(op, lane, arg, width);
    w.waiting |= 1u << lane;
    if (op >= kVoteBallot && op <= kVoteAll) w.voting |= 1u << lane;
    clear_runnable(me);
    const uint32_t group = w.mask[lane] & w.live;
    if ((group & ~w.waiting) == 0) {
      release_warp(w, me & ~31, group);
    } else {
      wait();
    }
    return w.res[lane];
  }

  unsigned active_mask() const { return warps_[cur_ >> 5].live; }

  // Entry of every fiber.
  static void fiber_main(ctxd::transfer_t t) {
    Engine* e = tl_running;
    save_suspended(t);
    try {
      e->spec_->run_thread(e->spec_->ctx);
    } catch (...) {
      std::fprintf(stderr, "lsemu: an exception escaped kernel %s\n", e->spec_->name);
      std::abort();
    }
    e->thread_exit();
  }

 private:
  // The fiber that switched to us passed the slot where its own suspended
  // context must be kept (nullptr when it exited and will never resume).
  static void save_suspended(const ctxd::transfer_t& t) {
    if (t.data) *static_cast<ctxd::fcontext_t*>(t.data) = t.fctx;
  }

  void run_block() {
    for (int t = 0; t < n_; ++t) {
      char* top = region_ + static_cast<size_t>(t) * stride_ + stride_;
      ctx_[t] = ctxd::make_fcontext(top, stack_size_, &Engine::fiber_main);
    }
    for (int i = 0; i < nwords_; ++i) {
      const int left = n_ - i * 64;
      runnable_[i] = left >= 64 ? ~0ull : ((1ull << left) - 1);
    }
    for (int w = 0; w < nwarps_; ++w) {
      const int left = n_ - w * 32;
      warps_[w].live = left >= 32 ? 0xffffffffu : ((1u << left) - 1);
      warps_[w].waiting = 0;
      warps_[w].voting = 0;
    }
    live_count_ = n_;
    bar_waiting_ = bar_true_ = 0;
    cur_ = 0;
    tl_thread_idx = tidx_[0];
    ++switches_;
    // Returns when the last thread of the block has exited.
    ctxd::jump_fcontext(ctx_[0], &host_ctx_);
  }

  void switch_to(int next) {
    const int me = cur_;
    cur_ = next;
    tl_thread_idx = tidx_[next];
    ++switches_;
    save_suspended(ctxd::jump_fcontext(ctx_[next], &ctx_[me]));
  }

  // Blocks the current fiber until a release marks it runnable again.
  void wait() {
    while (!is_runnable(cur_)) {
      const int next = find_next(cur_);
      if (next < 0) deadlock();
      switch_to(next);
    }
  }

  [[noreturn]] void thread_exit() {
    const int me = cur_;
    clear_runnable(me);
    WarpState& w = warps_[me >> 5];
    w.live &= ~(1u << (me & 31));
    --live_count_;
    if (live_count_ == 0) {
      ++switches_;
      ctxd::jump_fcontext(host_ctx_, nullptr);
      __builtin_unreachable();
    }
    // Our exit may complete a barrier or a warp exchange the others wait at.
    if (bar_waiting_ > 0 && bar_waiting_ == live_count_) release_barrier();
    if (w.waiting) recheck_warp(w, me & ~31);
    const int next = find_next(me);
    if (next < 0) deadlock();
    cur_ = next;
    tl_thread_idx = tidx_[next];
    ++switches_;
    ctxd::jump_fcontext(ctx_[next], nullptr);
    __builtin_unreachable();
  }

  void release_barrier() {
    bar_result_true_ = bar_true_;
    bar_result_n_ = bar_waiting_;
    bar_waiting_ = bar_true_ = 0;
    // Every live thread was at the barrier.
    for (int w = 0; w < nwarps_; ++w) {
      runnable_[w >> 1] |= static_cast<uint64_t>(warps_[w].live) << ((w & 1) * 32);
    }
  }

  static int shuffle_source(int op, int lane, int arg, int width) {
    if (op < kShflIdx || op > kShflXor) return -1;
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) width = 32;  // undefined in CUDA
    const int seg = lane & ~(width - 1);
    switch (op) {
      case kShflIdx: return seg + (arg & (width - 1));
      case kShflUp: return (arg < 0 || lane - arg < seg) ? -1 : lane - arg;
      case kShflDown: return (arg < 0 || lane + arg >= seg + width) ? -1 : lane + arg;
      default: {  // xor: earlier groups may be read, later ones give your own value
        const int s = lane ^ arg;
        return (s < 0 || s >= seg + width) ? -1 : s;
      }
    }
  }

  void release_warp(WarpState& w, int base, uint32_t group) {
    w.waiting &= ~group;
    uint32_t ballot = 0;
    if (w.voting & group) {  // only votes need the group's predicates
      w.voting &= ~group;
      for (uint32_t g = group; g; g &= g - 1) {
        const int q = __builtin_ctz(g);
        if (w.val[q] != 0) ballot |= 1u << q;
      }
    }
    for (uint32_t g = group; g; g &= g - 1) {
      const int q = __builtin_ctz(g);
      switch (w.op[q]) {
        case kVoteBallot: w.res[q] = ballot; break;
        case kVoteAny: w.res[q] = ballot != 0; break;
        case kVoteAll: w.res[q] = (ballot & group) == group; break;
        case kWarpSync: w.res[q] = 0; break;
        case kWarpUniform: w.res[q] = uniformity(w, group, q); break;
        default: {
          const int s = w.src[q];
          w.res[q] = (s >= 0 && ((group >> s) & 1u)) ? w.val[s] : w.val[q];
        }
      }
    }
    runnable_[base >> 6] |= static_cast<uint64_t>(group) << (base & 63);
  }

  // kWarpUniform: is every lane of `group` at a kWarpUniform with q's value?
  static uint64_t uniformity(const WarpState& w, uint32_t group, int q) {
    for (uint32_t g = group; g; g &= g - 1) {
      const int o = __builtin_ctz(g);
      if (w.op[o] != kWarpUniform || w.val[o] != w.val[q]) {
        return (1ull << 63) | static_cast<uint64_t>(o) |
               (static_cast<uint64_t>(w.op[o] & 0xff) << 8) | ((w.val[o] >> 56) << 16);
      }
    }
    return 0;
  }

  void recheck_warp(WarpState& w, int base) {
    uint32_t pending = w.waiting;
    while (pending) {
      const int l = __builtin_ctz(pending);
      const uint32_t group = w.mask[l] & w.live;
      if ((group & ~w.waiting) == 0) {
        release_warp(w, base, group);
        pending &= ~group;
      }
      pending &= ~(1u << l);
    }
  }

  bool is_runnable(int t) const { return (runnable_[t >> 6] >> (t & 63)) & 1u; }
  void clear_runnable(int t) { runnable_[t >> 6] &= ~(1ull << (t & 63)); }

  // Next runnable thread after `after`, cyclically; -1 if none.
  int find_next(int after) const {
    int start = after + 1;
    if (start >= n_) start = 0;
    int w = start >> 6;
    uint64_t bits = runnable_[w] & (~0ull << (start & 63));
    for (int i = 0; i <= nwords_; ++i) {
      if (bits) return (w << 6) | __builtin_ctzll(bits);
      if (++w == nwords_) w = 0;
      bits = runnable_[w];
    }
    return -1;
  }

  [[noreturn]] void deadlock() const {
    const LaunchSpec& s = *spec_;
    std::fprintf(stderr,
                 "lsemu: DEADLOCK in kernel %s, grid (%u,%u,%u) block (%u,%u,%u), at block "
                 "(%u,%u,%u): %d threads alive, %d waiting at __syncthreads",
                 s.name, s.grid.x, s.grid.y, s.grid.z, s.block.x, s.block.y, s.block.z,
                 tl_block_idx.x, tl_block_idx.y, tl_block_idx.z, live_count_, bar_waiting_);
    for (int w = 0; w < nwarps_; ++w) {
      if (warps_[w].waiting) {
        std::fprintf(stderr, ", warp %d lanes 0x%08x at a warp op (live 0x%08x)", w,
                     warps_[w].waiting, warps_[w].live);
      }
    }
    std::fprintf(stderr,
                 ". A barrier or warp operation is not reached by all threads that "
                 "have not exited (divergent __syncthreads / shuffle?)\n");
    std::abort();
  }

  // Stacks.
  char* region_ = nullptr;
  size_t guard_ = 0, stack_size_ = 0, stride_ = 0;
  void* smem_ = nullptr;
  size_t smem_cap_ = 0;

  // The launch.
  const LaunchSpec* spec_ = nullptr;
  int n_ = 0, nwords_ = 0, nwarps_ = 0;
  uint3 tidx_[kMaxThreads];

  // The block.
  ctxd::fcontext_t host_ctx_ = nullptr;
  ctxd::fcontext_t ctx_[kMaxThreads];
  uint64_t runnable_[kMaxWords];
  WarpState warps_[kMaxWarps];
  int cur_ = 0;
  int live_count_ = 0;
  int bar_waiting_ = 0, bar_true_ = 0;
  int bar_result_true_ = 0, bar_result_n_ = 0;
  unsigned long long switches_ = 0;
};

Engine* engine_for_this_thread() {
  thread_local std::unique_ptr<Engine> engine;
  if (!engine) engine = std::make_unique<Engine>();
  return engine->ok() ? engine.get() : nullptr;
}

// CUDA's documented launch errors: a block or grid shape the device cannot
// run is cudaErrorInvalidConfiguration ("requesting too many threads or
// blocks", also for more shared memory than the device has). Dynamic shared
// memory above the kernel's current limit (48 KiB unless raised with
// cudaFuncSetAttribute(MaxDynamicSharedMemorySize)) but within the device's
// opt-in maximum is what the runtime reports as cudaErrorInvalidValue.
cudaError_t validate(const LaunchSpec& s) {
  const unsigned b[3] = {s.block.x, s.block.y, s.block.z};
  const unsigned g[3] = {s.grid.x, s.grid.y, s.grid.z};
  unsigned long long threads = 1;
  for (int i = 0; i < 3; ++i) {
    if (b[i] == 0 || b[i] > kMaxBlockDim[i]) return cudaErrorInvalidConfiguration;
    if (g[i] == 0 || g[i] > kMaxGridDim[i]) return cudaErrorInvalidConfiguration;
    threads *= b[i];
  }
  if (threads > static_cast<unsigned long long>(kMaxThreadsPerBlock)) {
    return cudaErrorInvalidConfiguration;
  }
  if (s.smem_bytes > kMaxDynSmemOptin) return cudaErrorInvalidConfiguration;
  if (s.smem_bytes > dyn_smem_limit(s.func)) return cudaErrorInvalidValue;
  if (!stream_valid(s.stream)) return cudaErrorInvalidResourceHandle;
  return cudaSuccess;
}

}  // namespace

cudaError_t launch(const LaunchSpec& spec) {
  const cudaError_t err = validate(spec);
  if (err != cudaSuccess) return record_error(err);
  if (tl_running) {  // a launch from inside a kernel (dynamic parallelism)
    std::fprintf(stderr, "lsemu: kernel %s launched from device code: not emulated\n", spec.name);
    return record_error(cudaErrorNotSupported);
  }
  Engine* e = engine_for_this_thread();
  if (!e || !e->reserve_smem(spec.smem_bytes)) return record_error(cudaErrorLaunchOutOfResources);
  e->run(spec);
  return cudaSuccess;
}

// Outside a kernel the caller behaves as a block of one thread.
int block_barrier(int op, int pred) {
  if (tl_running) return tl_running->barrier(op, pred);
  return op == kBarPlain ? 0 : (pred != 0);
}

uint64_t warp_op(unsigned mask, int op, uint64_t bits, int arg, int width) {
  if (tl_running) return tl_running->warp_op(mask, op, bits, arg, width);
  switch (op) {
    case kVoteBallot:
    case kVoteAny:
    case kVoteAll: return bits != 0;
    case kWarpSync:
    case kWarpUniform: return 0;
    default: return bits;
  }
}

unsigned active_mask() { return tl_running ? tl_running->active_mask() : 1u; }

}  // namespace lsemu::detail

namespace lsemu {
Stats stats() {
  Stats s;
  s.launches = detail::g_launches.load(std::memory_order_relaxed);
  s.blocks = detail::g_blocks.load(std::memory_order_relaxed);
  s.threads = detail::g_threads.load(std::memory_order_relaxed);
  s.switches = detail::g_switches.load(std::memory_order_relaxed);
  return s;
}
}  // namespace lsemu
