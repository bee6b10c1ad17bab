// Self-test of the SIMT engine and launches: kernels written as CUDA code
// (compiled by g++ under the force-included prelude) against values
// computed by hand on the host.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <type_traits>
#include <vector>

#include "emu_test_util.h"

namespace {

using lsemu_test::DevBuf;

static_assert(LSEMU_ACTIVE == 1, "prelude not force-included");

// ---- Kernels -------------------------------------------------------------------

// The shape of loraserve's block_sum: warp shuffles, a static __shared__
// array and __syncthreads, over 3-D blocks and grids.
__global__ void block_sum_kernel(const float* in, float* out) {
  __shared__ float warp_sums[32];
  const unsigned tid = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
  const unsigned nthreads = blockDim.x * blockDim.y * blockDim.z;
  const unsigned block = blockIdx.x + blockIdx.y * gridDim.x + blockIdx.z * gridDim.x * gridDim.y;
  float v = in[block * nthreads + tid];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (tid % 32 == 0) warp_sums[tid / 32] = v;
  __syncthreads();
  if (tid < 32) {
    v = tid < nthreads / 32 ? warp_sums[tid] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (tid == 0) out[block] = v;
  }
}

struct Seen {
  uint3 t, b;
  dim3 bd, gd;
  int order;
};

__global__ void indices_kernel(Seen* seen, int* counter) {
  __shared__ int block_order;
  const unsigned tid = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
  const unsigned block = blockIdx.x + blockIdx.y * gridDim.x + blockIdx.z * gridDim.x * gridDim.y;
  if (tid == 0) block_order = atomicAdd(counter, 1);
  __syncthreads();
  Seen& s = seen[block * blockDim.x * blockDim.y * blockDim.z + tid];
  s.t = threadIdx;
  s.b = blockIdx;
  s.bd = blockDim;
  s.gd = gridDim;
  s.order = block_order;
}

// Dynamic shared memory: reverse the block's values through it.
__global__ void reverse_kernel(const int* in, int* out, uint32_t* first_bits, uintptr_t* addr) {
  int* s = static_cast<int*>(lsemu::dynamic_smem());
  const int n = static_cast<int>(blockDim.x);
  const int t = static_cast<int>(threadIdx.x);
  if (t == 0) {
    std::memcpy(&first_bits[blockIdx.x], s, 4);  // before any write this block
    addr[blockIdx.x] = reinterpret_cast<uintptr_t>(s);
  }
  __syncthreads();
  s[t] = in[blockIdx.x * n + t];
  __syncthreads();
  out[blockIdx.x * n + t] = s[n - 1 - t];
}

__global__ void smem_touch_kernel(int* ran) {
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) *ran += 1;
}

// Threads >= live return at once; the others sync and shuffle.
__global__ void early_exit_kernel(int live, int* out, int* shfl_out) {
  __shared__ int s[256];
  const int t = static_cast<int>(threadIdx.x);
  if (t >= live) return;
  s[t] = t * 3;
  __syncthreads();
  out[t] = s[live - 1 - t];
  // An exited source lane gives the caller's own value.
  shfl_out[t] = __shfl_down_sync(0xffffffffu, t, 1);
  __syncthreads();
  out[t] += __syncthreads_count(1) * 1000;
}

template <class T>
__global__ void shuffle_kernel(const T* in, T* xor_out, T* down_out, T* up_out, T* idx_out, int width,
                               int arg) {
  const int t = static_cast<int>(threadIdx.x);
  const T v = in[t];
  xor_out[t] = __shfl_xor_sync(0xffffffffu, v, arg, width);
  down_out[t] = __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(arg), width);
  up_out[t] = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(arg), width);
  idx_out[t] = __shfl_sync(0xffffffffu, v, arg + t / 3, width);
}

__global__ void vote_kernel(unsigned* ballot, int* any, int* all, int* all_true, int* counts) {
  const int t = static_cast<int>(threadIdx.x);
  const int lane = t % 32;
  ballot[t] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  any[t] = __any_sync(0xffffffffu, lane == 31);
  all[t] = __all_sync(0xffffffffu, lane < 31);
  all_true[t] = __all_sync(0xffffffffu, 1);
  const int c = __syncthreads_count(t % 4 == 0);
  const int a = __syncthreads_and(t < 1000);
  const int o = __syncthreads_or(t == 5);
  counts[t] = c * 100 + a * 10 + o;
}

// CUDA copies parameters per thread: thread 0 changing its copy of n must
// not change anyone else's.
__global__ void param_copy_kernel(int n, int* out) {
  if (threadIdx.x == 0) n += 100;
  __syncthreads();
  out[threadIdx.x] = n;
}

template <int A, int B>
__global__ void template_kernel(int* out) {
  out[threadIdx.x] = A * 10 + B + static_cast<int>(threadIdx.x);
}

__global__ void atomics_kernel(int* sum, int* mx, unsigned long long* big, float* fsum, int* cas) {
  const int g = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(sum, 1);
  atomicMax(mx, g);
  atomicAdd(big, 1ull << 33);
  atomicAdd(fsum, 0.5f);
  atomicCAS(cas, g, g + 1);  // only succeeds in order: cas ends at the thread count
}

__global__ void sync_loop_kernel(int iters, float* out) {
  float v = static_cast<float>(threadIdx.x);
  for (int i = 0; i < iters; ++i) {
    __syncthreads();
    v += __shfl_xor_sync(0xffffffffu, v, 1) * 0.0f;
  }
  if (threadIdx.x == 0) out[blockIdx.x] = v;
}

__global__ void empty_kernel() {}

__global__ void deadlock_kernel(float* out) {
  float v = 1.0f;
  if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 16);  // lanes 16..31 never come
  __syncthreads();
  out[threadIdx.x] = v;
}

// ---- Tests ---------------------------------------------------------------------

TEST(Simt, BlockSumOverBlockShapesAndGrids) {
  const dim3 blocks[] = {dim3(32), dim3(64, 2), dim3(8, 4, 4), dim3(1024), dim3(16, 8, 8), dim3(96, 3)};
  const dim3 grids[] = {dim3(1), dim3(5), dim3(3, 2, 2)};
  for (const dim3& bd : blocks) {
    for (const dim3& gd : grids) {
      const int nt = static_cast<int>(bd.x * bd.y * bd.z);
      const int nb = static_cast<int>(gd.x * gd.y * gd.z);
      std::vector<float> in(static_cast<size_t>(nt) * nb);
      for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>((i * 7 + 3) % 11);
      DevBuf<float> din(in);
      DevBuf<float> dout(static_cast<size_t>(nb));
      LS_EMU_LAUNCH(block_sum_kernel, gd, bd, 0, nullptr)(din.get(), dout.get());
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      const std::vector<float> out = dout.to_host();
      for (int b = 0; b < nb; ++b) {
        double expect = 0;
        for (int t = 0; t < nt; ++t) expect += in[static_cast<size_t>(b) * nt + t];
        EXPECT_EQ(out[b], expect) << "block " << bd.x << "x" << bd.y << "x" << bd.z << " grid " << gd.x
                                  << "x" << gd.y << "x" << gd.z << " b=" << b;
      }
    }
  }
}

TEST(Simt, IndicesAndBlockOrder) {
  const dim3 gd(2, 3, 2), bd(4, 2, 3);
  const int nt = 24, nb = 12;
  DevBuf<Seen> seen(static_cast<size_t>(nt * nb));
  DevBuf<int> counter(std::vector<int>{0});
  LS_EMU_LAUNCH(indices_kernel, gd, bd, 0, 0)(seen.get(), counter.get());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<Seen> s = seen.to_host();
  for (unsigned bz = 0; bz < 2; ++bz)
    for (unsigned by = 0; by < 3; ++by)
      for (unsigned bx = 0; bx < 2; ++bx)
        for (unsigned tz = 0; tz < 3; ++tz)
          for (unsigned ty = 0; ty < 2; ++ty)
            for (unsigned tx = 0; tx < 4; ++tx) {
              const unsigned block = bx + by * 2 + bz * 6;
              const Seen& e = s[block * nt + tx + ty * 4 + tz * 8];
              EXPECT_EQ(e.t.x, tx);
              EXPECT_EQ(e.t.y, ty);
              EXPECT_EQ(e.t.z, tz);
              EXPECT_EQ(e.b.x, bx);
              EXPECT_EQ(e.b.y, by);
              EXPECT_EQ(e.b.z, bz);
              EXPECT_EQ(e.bd.x * 100 + e.bd.y * 10 + e.bd.z, 423u);
              EXPECT_EQ(e.gd.x * 100 + e.gd.y * 10 + e.gd.z, 232u);
              EXPECT_EQ(e.order, static_cast<int>(block)) << "blocks run x fastest, then y, then z";
            }
  // Outside a kernel the indices read as a lone thread's.
  EXPECT_EQ(threadIdx.x + blockIdx.x + blockDim.x + gridDim.x, 2u);
}

TEST(Simt, DynamicSharedMemory) {
  const int n = 128, nb = 3;
  std::vector<int> in(n * nb);
  for (int i = 0; i < n * nb; ++i) in[i] = i * 5 + 1;
  DevBuf<int> din(in), dout(static_cast<size_t>(n * nb));
  DevBuf<uint32_t> bits(static_cast<size_t>(nb));
  DevBuf<uintptr_t> addr(static_cast<size_t>(nb));
  LS_EMU_LAUNCH(reverse_kernel, nb, n, n * sizeof(int), 0)(din.get(), dout.get(), bits.get(), addr.get());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> out = dout.to_host();
  for (int b = 0; b < nb; ++b)
    for (int t = 0; t < n; ++t) EXPECT_EQ(out[b * n + t], in[b * n + n - 1 - t]);
  for (uint32_t v : bits.to_host()) EXPECT_EQ(v, 0xFFFFFFFFu) << "refilled with 0xFF before each block";
  for (uintptr_t a : addr.to_host()) EXPECT_EQ(a % 16, 0u);
}

TEST(Simt, DynamicSharedMemoryLimits) {
  DevBuf<int> ran(std::vector<int>{0});
  // Above 48 KiB without opt-in: cudaErrorInvalidValue, nothing runs.
  LS_EMU_LAUNCH(smem_touch_kernel, 1, 32, 64 * 1024, 0)(ran.get());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(ran.to_host()[0], 0);
  ASSERT_EQ(cudaFuncSetAttribute(smem_touch_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024),
            cudaSuccess);
  LS_EMU_LAUNCH(smem_touch_kernel, 1, 32, 64 * 1024, 0)(ran.get());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(ran.to_host()[0], 1);
  // Above the opt-in limit of the device: a configuration the device cannot run.
  LS_EMU_LAUNCH(smem_touch_kernel, 1, 32, 228 * 1024, 0)(ran.get());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaFuncSetAttribute(smem_touch_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024),
            cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(ran.to_host()[0], 1);
}

TEST(Simt, EarlyExitThenBarrierAndShuffle) {
  for (int live : {1, 31, 32, 100, 255, 256}) {
    DevBuf<int> out(std::vector<int>(256, -7)), shfl(std::vector<int>(256, -7));
    LS_EMU_LAUNCH(early_exit_kernel, 1, 256, 0, 0)(live, out.get(), shfl.get());
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<int> o = out.to_host(), s = shfl.to_host();
    for (int t = 0; t < 256; ++t) {
      if (t >= live) {
        EXPECT_EQ(o[t], -7);
        continue;
      }
      EXPECT_EQ(o[t], (live - 1 - t) * 3 + live * 1000) << "live=" << live << " t=" << t;
      const bool src_live = t % 32 != 31 && t + 1 < live;
      EXPECT_EQ(s[t], src_live ? t + 1 : t) << "live=" << live << " t=" << t;
    }
  }
}

// What CUDA documents for lane `lane` of a width-`w` shuffle.
int src_xor(int lane, int m, int w) {
  const int s = lane ^ m;
  return s >= (lane / w + 1) * w ? lane : s;
}
int src_down(int lane, int d, int w) { return lane % w + d < w ? lane + d : lane; }
int src_up(int lane, int d, int w) { return lane % w >= d ? lane - d : lane; }
int src_idx(int lane, int src, int w) { return lane / w * w + src % w; }

template <class T>
void check_shuffles(T base, T step) {
  const int n = 64;  // two warps
  std::vector<T> in(n);
  for (int i = 0; i < n; ++i) in[i] = static_cast<T>(base + step * static_cast<T>(i));
  for (int width : {32, 16, 8, 4, 2, 1}) {
    for (int arg : {0, 1, 3, 5, 16}) {
      DevBuf<T> din(in), x(n), d(n), u(n), ix(n);
      LS_EMU_LAUNCH(shuffle_kernel<T>, 1, n, 0, 0)(din.get(), x.get(), d.get(), u.get(), ix.get(), width, arg);
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      const std::vector<T> xo = x.to_host(), dn = d.to_host(), up = u.to_host(), id = ix.to_host();
      for (int t = 0; t < n; ++t) {
        const int w0 = t / 32 * 32, lane = t % 32;
        EXPECT_EQ(xo[t], in[w0 + src_xor(lane, arg, width)]) << "xor w=" << width << " a=" << arg << " t=" << t;
        EXPECT_EQ(dn[t], in[w0 + src_down(lane, arg, width)]) << "down w=" << width << " t=" << t;
        EXPECT_EQ(up[t], in[w0 + src_up(lane, arg, width)]) << "up w=" << width << " t=" << t;
        EXPECT_EQ(id[t], in[w0 + src_idx(lane, arg + t / 3, width)]) << "idx w=" << width << " t=" << t;
      }
    }
  }
}

TEST(Simt, ShuffleVariantsMatchDocumentedLanes) {
  check_shuffles<float>(0.5f, 1.25f);
  check_shuffles<int>(-40, 3);
  check_shuffles<unsigned>(7u, 11u);
  check_shuffles<long long>(-(1ll << 40), (1ll << 35) + 1);
  check_shuffles<unsigned long long>(1ull << 63, 12345ull);
  check_shuffles<double>(-1e300, 3e297);
}

TEST(Simt, VotesAndCountingBarriers) {
  const int n = 96;
  DevBuf<unsigned> ballot(n);
  DevBuf<int> any(n), all(n), all_true(n), counts(n);
  LS_EMU_LAUNCH(vote_kernel, 1, n, 0, 0)(ballot.get(), any.get(), all.get(), all_true.get(), counts.get());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  unsigned expect_ballot = 0;
  for (int l = 0; l < 32; l += 3) expect_ballot |= 1u << l;
  const auto b = ballot.to_host();
  const auto an = any.to_host(), al = all.to_host(), at = all_true.to_host(), c = counts.to_host();
  for (int t = 0; t < n; ++t) {
    EXPECT_EQ(b[t], expect_ballot);
    EXPECT_EQ(an[t], 1);
    EXPECT_EQ(al[t], 0);
    EXPECT_EQ(at[t], 1);
    EXPECT_EQ(c[t], 24 * 100 + 10 + 1);
  }
}

TEST(Simt, ParametersAreCopiedPerThread) {
  DevBuf<int> out(64);
  LS_EMU_LAUNCH(param_copy_kernel, 1, 64, 0, 0)(5, out.get());
  const std::vector<int> o = out.to_host();
  EXPECT_EQ(o[0], 105);
  for (int t = 1; t < 64; ++t) EXPECT_EQ(o[t], 5);
}

TEST(Simt, TemplateKernelInParentheses) {
  DevBuf<int> out(8);
  LS_EMU_LAUNCH((template_kernel<3, 4>), dim3(1), dim3(8), 0, nullptr)(out.get());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> o = out.to_host();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(o[t], 34 + t);
}

TEST(Simt, Atomics) {
  DevBuf<int> sum(std::vector<int>{0}), mx(std::vector<int>{-5}), cas(std::vector<int>{0});
  DevBuf<unsigned long long> big(std::vector<unsigned long long>{0});
  DevBuf<float> fsum(std::vector<float>{0});
  LS_EMU_LAUNCH(atomics_kernel, 4, 256, 0, 0)(sum.get(), mx.get(), big.get(), fsum.get(), cas.get());
  EXPECT_EQ(sum.to_host()[0], 1024);
  EXPECT_EQ(mx.to_host()[0], 1023);
  EXPECT_EQ(big.to_host()[0], 1024ull << 33);
  EXPECT_EQ(fsum.to_host()[0], 512.0f);
  EXPECT_EQ(cas.to_host()[0], 1024);
}

TEST(Simt, LaunchConfigurationErrors) {
  DevBuf<int> ran(std::vector<int>{0});
  struct Case {
    dim3 grid, block;
  };
  const Case bad[] = {
      {dim3(1), dim3(1025)},        {dim3(1), dim3(0)},          {dim3(1), dim3(1, 1025)},
      {dim3(1), dim3(1, 1, 65)},    {dim3(1), dim3(32, 32, 2)},  {dim3(0), dim3(32)},
      {dim3(1, 65536), dim3(32)},   {dim3(1, 1, 65536), dim3(32)}, {dim3(0x80000000u), dim3(32)},
  };
  for (const Case& c : bad) {
    LS_EMU_LAUNCH(smem_touch_kernel, c.grid, c.block, 0, 0)(ran.get());
    EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "cudaGetLastError clears";
  }
  LS_EMU_LAUNCH(smem_touch_kernel, -1, 32, 0, 0)(ran.get());  // converts to 2^32-1 blocks
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(ran.to_host()[0], 0) << "no failed launch ran";
  // The largest legal shapes do run.
  LS_EMU_LAUNCH(smem_touch_kernel, dim3(1, 1, 1), dim3(1, 1, 64), 0, 0)(ran.get());
  LS_EMU_LAUNCH(smem_touch_kernel, dim3(1, 1, 1), dim3(1024), 0, 0)(ran.get());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(ran.to_host()[0], 2);
  // A destroyed stream is an invalid handle.
  cudaStream_t st;
  ASSERT_EQ(cudaStreamCreate(&st), cudaSuccess);
  LS_EMU_LAUNCH(smem_touch_kernel, 1, 32, 0, st)(ran.get());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaStreamDestroy(st), cudaSuccess);
  LS_EMU_LAUNCH(smem_touch_kernel, 1, 32, 0, st)(ran.get());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(ran.to_host()[0], 3);
}

TEST(Simt, HostThreadsLaunchConcurrently) {
  auto worker = [](int seed, bool* ok) {
    const int nt = 256, nb = 40;
    std::vector<float> in(nt * nb);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>((i * 13 + seed) % 17);
    std::vector<float> out(nb);
    *ok = true;
    for (int rep = 0; rep < 20; ++rep) {
      // Kernel arguments are not checked: plain host memory works too.
      LS_EMU_LAUNCH(block_sum_kernel, nb, nt, 0, 0)(in.data(), out.data());
      for (int b = 0; b < nb; ++b) {
        float e = 0;
        for (int t = 0; t < nt; ++t) e += in[b * nt + t];
        if (out[b] != e) *ok = false;
      }
    }
  };
  bool ok1 = false, ok2 = false;
  std::thread a(worker, 1, &ok1), b(worker, 2, &ok2);
  a.join();
  b.join();
  EXPECT_TRUE(ok1);
  EXPECT_TRUE(ok2);
}

TEST(Simt, DeviceMinMaxCoexistWithStd) {
  const int a = 4;
  const int64_t big = int64_t{1} << 40;
  static_assert(std::is_same<decltype(min(a + 1, big)), int64_t>::value, "common type");
  EXPECT_EQ(min(a + 1, big), 5);
  EXPECT_EQ(max(a + 1, big), big);
  EXPECT_EQ(min(3u, 7u), 3u);
  EXPECT_EQ(max(-1, 2), 2);
  EXPECT_EQ(max(1.5f, -2.0f), 1.5f);
  EXPECT_EQ(min(2.0, 1.0), 1.0);
  EXPECT_EQ(min(size_t{3}, size_t{9}), size_t{3});
  EXPECT_EQ(std::min(3, 4), 3);
  EXPECT_EQ(std::max<int64_t>(3, big), big);
  using std::min;
  EXPECT_EQ(min(7, 2), 2);
}

TEST(Simt, FiberSwitchRate) {
  const int threads = 1024, blocks = 4, iters = 200;
  DevBuf<float> out(blocks);
  const lsemu::Stats s0 = lsemu::stats();
  const auto t0 = std::chrono::steady_clock::now();
  LS_EMU_LAUNCH(sync_loop_kernel, blocks, threads, 0, 0)(iters, out.get());
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const lsemu::Stats s1 = lsemu::stats();
  const double switches = static_cast<double>(s1.switches - s0.switches);
  // Each thread switches once per barrier and once per shuffle, at least.
  EXPECT_GE(switches, static_cast<double>(blocks) * threads * iters);
  std::printf("[ lsemu    ] %.0f fiber switches in %.3f s: %.1f M switches/s, %.1f ns per switch\n",
              switches, sec, switches / sec / 1e6, sec / switches * 1e9);

  const int empty_blocks = 2000;
  const auto t2 = std::chrono::steady_clock::now();
  LS_EMU_LAUNCH(empty_kernel, empty_blocks, 256, 0, 0)();
  const double sec2 = std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
  std::printf("[ lsemu    ] empty kernel: %.1f M threads/s (%.1f ns per thread start+exit)\n",
              empty_blocks * 256 / sec2 / 1e6, sec2 / (empty_blocks * 256) * 1e9);
}

TEST(SimtDeathTest, DivergentWarpOpAbortsWithLaunchShape) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::vector<float> out(64);
        LS_EMU_LAUNCH(deadlock_kernel, dim3(2, 3), dim3(64), 0, 0)(out.data());
      },
      "DEADLOCK in kernel deadlock_kernel, grid \\(2,3,1\\) block \\(64,1,1\\)");
}

}  // namespace
