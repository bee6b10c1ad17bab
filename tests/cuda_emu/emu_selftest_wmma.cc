// Self-test of the emulated warp matrix API (nvcuda::wmma, lsemu_wmma.h):
// GEMMs written as CUDA kernels against double-precision host references,
// for every operand layout, bf16 and fp16 inputs, float and fp16
// accumulators and the three shapes; and the misuse checks (death tests).
#include <gtest/gtest.h>
#include <mma.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include "emu_test_util.h"

namespace {

using lsemu_test::DevBuf;
using namespace nvcuda;

// <mma.h> must be the emulator's, not the toolkit's (which is empty under g++).
static_assert(LSEMU_WMMA_ACTIVE == 1, "<mma.h> did not resolve to tests/cuda_emu/mma.h");

// The fragment types: whole tile per lane, storage type as in CUDA.
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
static_assert(FragA::num_elements == 256, "");
static_assert(FragAcc::num_elements == 256, "");
static_assert(std::is_same<std::remove_reference_t<decltype(FragA{}.x[0])>, __nv_bfloat16>::value, "");
static_assert(std::is_same<std::remove_reference_t<decltype(FragAcc{}.x[0])>, float>::value, "");
static_assert(wmma::fragment<wmma::matrix_b, 32, 8, 16, __half, wmma::col_major>::num_elements == 128, "");
static_assert(wmma::fragment<wmma::accumulator, 8, 32, 16, __half>::num_elements == 256, "");

// ---- Kernels ---------------------------------------------------------------------

// C = scale * (A B + C0) (C0 optional). A is M x K, B is K x N, both in the
// layout of their fragment (row-major: ld = columns; col-major: ld = rows).
// C is float, row- or column-major. Each warp computes one TM x TN tile;
// blockDim = (32, kWarps); warps past the last tile row return (whole warps).
template <typename T, typename LA, typename LB, int TM, int TN, int TK>
__global__ void wmma_gemm(const T* A, const T* B, const float* C0, float* C, int M, int N, int K,
                          float scale, bool store_col) {
  const int tile_i = static_cast<int>(blockIdx.y * blockDim.y + threadIdx.y);
  const int tile_j = static_cast<int>(blockIdx.x);
  if (tile_i * TM >= M) return;
  const int i0 = tile_i * TM, j0 = tile_j * TN;
  constexpr bool a_row = std::is_same<LA, wmma::row_major>::value;
  constexpr bool b_row = std::is_same<LB, wmma::row_major>::value;
  const unsigned lda = a_row ? K : M, ldb = b_row ? N : K;

  wmma::fragment<wmma::accumulator, TM, TN, TK, float> acc;
  if (C0 != nullptr) {
    wmma::load_matrix_sync(acc, C0 + static_cast<size_t>(i0) * N + j0, N, wmma::mem_row_major);
  } else {
    wmma::fill_fragment(acc, 0.0f);
  }
  for (int k0 = 0; k0 < K; k0 += TK) {
    wmma::fragment<wmma::matrix_a, TM, TN, TK, T, LA> a;
    wmma::fragment<wmma::matrix_b, TM, TN, TK, T, LB> b;
    wmma::load_matrix_sync(a, a_row ? A + static_cast<size_t>(i0) * lda + k0 : A + static_cast<size_t>(k0) * lda + i0, lda);
    wmma::load_matrix_sync(b, b_row ? B + static_cast<size_t>(k0) * ldb + j0 : B + static_cast<size_t>(j0) * ldb + k0, ldb);
    wmma::mma_sync(acc, a, b, acc);
  }
  for (int e = 0; e < acc.num_elements; ++e) acc.x[e] *= scale;
  if (store_col) {
    wmma::store_matrix_sync(C + static_cast<size_t>(j0) * M + i0, acc, M, wmma::mem_col_major);
  } else {
    wmma::store_matrix_sync(C + static_cast<size_t>(i0) * N + j0, acc, N, wmma::mem_row_major);
  }
}

// fill_fragment on all three uses: ones(16x16) * (2 * ones(16x16)) + 0.5 = 32.5.
__global__ void wmma_fill_kernel(float* out) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
  wmma::fill_fragment(a, __float2bfloat16(1.0f));
  wmma::fill_fragment(b, __float2bfloat16(2.0f));
  wmma::fill_fragment(c, 0.5f);
  wmma::mma_sync(c, a, b, c);
  wmma::store_matrix_sync(out, c, 16, wmma::mem_row_major);
}

// fp16 in, fp16 accumulator (loaded and stored as __half), K = 32:
// D = A B + C, two mma_sync, each rounded to fp16.
__global__ void wmma_half_acc_kernel(const __half* A, const __half* B, const __half* C, __half* D) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, 16, __half> acc;
  wmma::load_matrix_sync(acc, C, 16, wmma::mem_row_major);
  for (int k0 = 0; k0 < 32; k0 += 16) {
    wmma::load_matrix_sync(a, A + k0, 32);
    wmma::load_matrix_sync(b, B + k0 * 16, 16);
    wmma::mma_sync(acc, a, b, acc);
  }
  wmma::store_matrix_sync(D, acc, 16, wmma::mem_row_major);
}

// Through shared memory as attention kernels do: stage A and B tiles with all
// threads, __syncthreads, then the MMA; the accumulator goes back through
// shared memory (store, __syncwarp, read by every lane).
__global__ void wmma_smem_kernel(const __nv_bfloat16* A, const __nv_bfloat16* B, float* out) {
  __shared__ __align__(32) __nv_bfloat16 sa[16 * 16];
  __shared__ __align__(32) __nv_bfloat16 sb[16 * 16];
  __shared__ __align__(32) float sc[16 * 16];
  const int lane = static_cast<int>(threadIdx.x);
  for (int e = lane; e < 256; e += 32) {
    sa[e] = A[e];
    sb[e] = B[e];
  }
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(a, sa, 16);
  wmma::load_matrix_sync(b, sb, 16);
  wmma::mma_sync(acc, a, b, acc);
  wmma::store_matrix_sync(sc, acc, 16, wmma::mem_row_major);
  __syncwarp();
  // Row sums, one row per lane (lanes 0..15).
  if (lane < 16) {
    float s = 0.0f;
    for (int j = 0; j < 16; ++j) s += sc[lane * 16 + j];
    out[lane] = s;
  }
}

// store_matrix_sync writes each lane's share only: a lane that reads the
// stored tile before a __syncwarp may see elements not yet written (the
// buffer was filled with NaN first).
__global__ void wmma_store_without_syncwarp_kernel(int* saw_nan) {
  float* sc = static_cast<float*>(lsemu::dynamic_smem());
  const int lane = static_cast<int>(threadIdx.x);
  for (int e = lane; e < 256; e += 32) sc[e] = NAN;
  __syncwarp();
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 1.0f);
  wmma::store_matrix_sync(sc, acc, 16, wmma::mem_row_major);
  int nan = 0;
  for (int e = 0; e < 256; ++e) nan |= std::isnan(sc[e]) ? 1 : 0;  // no __syncwarp: a race
  atomicOr(saw_nan, nan);
}

// ---- Misuse (each aborts) --------------------------------------------------------

__global__ void wmma_bad_ldm_kernel(const __nv_bfloat16* A) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
  wmma::load_matrix_sync(a, A, 20);  // 20 is not a multiple of 8
}

__global__ void wmma_misaligned_kernel(const __nv_bfloat16* A) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
  wmma::load_matrix_sync(a, A + 8, 32);  // 16 bytes past a 256-byte boundary
}

__global__ void wmma_divergent_kernel(float* out) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(a, __float2bfloat16(1.0f));
  wmma::fill_fragment(b, __float2bfloat16(1.0f));
  wmma::fill_fragment(acc, 0.0f);
  if (threadIdx.x < 16) {
    wmma::mma_sync(acc, a, b, acc);
  } else {
    wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
  }
}

__global__ void wmma_against_syncwarp_kernel(float* out) {
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  if (threadIdx.x < 16) {
    wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
  } else {
    __syncwarp();
  }
}

__global__ void wmma_lane_dependent_kernel(float* out) {
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  acc.x[0] = static_cast<float>(threadIdx.x);  // the mapping is unknown: a bug
  wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
}

__global__ void wmma_load_without_sync_kernel(float* out) {
  __shared__ __align__(32) __nv_bfloat16 sa[16 * 16];
  const int lane = static_cast<int>(threadIdx.x);
  for (int e = lane; e < 256; e += 32) sa[e] = __float2bfloat16(static_cast<float>(e));
  // missing __syncwarp()
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
  wmma::load_matrix_sync(a, sa, 16);
  out[lane] = __bfloat162float(a.x[lane]);
}

__global__ void wmma_partial_warp_kernel(float* out) {
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
}

__global__ void wmma_lane0_only_kernel(float* out) {
  if (threadIdx.x != 0) return;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
}

// ---- Host side ---------------------------------------------------------------------

template <typename T>
T to_t(float v);
template <>
__nv_bfloat16 to_t<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__half to_t<__half>(float v) {
  return __float2half_rn(v);
}
inline float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float to_f(__half v) { return __half2float(v); }

// Random values in [-1, 1), rounded to T.
template <typename T>
std::vector<T> random_matrix(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<T> v(n);
  for (auto& x : v) x = to_t<T>(dist(rng));
  return v;
}

template <typename T, typename LA, typename LB, int TM, int TN, int TK>
void run_gemm(int M, int N, int K, bool with_c0, float scale, bool store_col,
              double* launch_sec = nullptr) {
  constexpr bool a_row = std::is_same<LA, wmma::row_major>::value;
  constexpr bool b_row = std::is_same<LB, wmma::row_major>::value;
  SCOPED_TRACE(testing::Message() << "M=" << M << " N=" << N << " K=" << K << " tile " << TM << "x"
                                  << TN << "x" << TK << " a_row=" << a_row << " b_row=" << b_row
                                  << " c0=" << with_c0 << " store_col=" << store_col);
  const std::vector<T> a = random_matrix<T>(static_cast<size_t>(M) * K, 1234u + M + K);
  const std::vector<T> b = random_matrix<T>(static_cast<size_t>(K) * N, 99u + N + K);
  std::vector<float> c0(static_cast<size_t>(M) * N);
  for (size_t i = 0; i < c0.size(); ++i) c0[i] = 0.25f * static_cast<float>(i % 7) - 0.75f;

  auto A = [&](int i, int k) { return static_cast<double>(to_f(a_row ? a[i * K + k] : a[k * M + i])); };
  auto B = [&](int k, int j) { return static_cast<double>(to_f(b_row ? b[k * N + j] : b[j * K + k])); };

  DevBuf<T> da(a), db(b);
  DevBuf<float> dc0(c0), dc(static_cast<size_t>(M) * N);
  constexpr int kWarps = 2;
  const int tile_rows = M / TM;
  const dim3 grid(N / TN, (tile_rows + kWarps - 1) / kWarps);
  const auto t0 = std::chrono::steady_clock::now();
  LS_EMU_LAUNCH((wmma_gemm<T, LA, LB, TM, TN, TK>), grid, dim3(32, kWarps), 0, 0)(
      da.get(), db.get(), with_c0 ? dc0.get() : nullptr, dc.get(), M, N, K, scale, store_col);
  if (launch_sec) {
    *launch_sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<float> got = dc.to_host();

  int bad = 0;
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      double ref = with_c0 ? c0[i * N + j] : 0.0, mag = std::fabs(ref);
      for (int k = 0; k < K; ++k) {
        ref += A(i, k) * B(k, j);
        mag += std::fabs(A(i, k) * B(k, j));
      }
      ref *= scale;
      mag *= std::fabs(scale);
      const double g = got[store_col ? j * M + i : i * N + j];
      if (!(std::fabs(g - ref) <= 1e-4 * std::max(mag, 1e-3)) && ++bad <= 5) {
        ADD_FAILURE() << "C(" << i << "," << j << ") = " << g << ", expected " << ref;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(Wmma, Bf16GemmAllLayouts) {
  using R = wmma::row_major;
  using C = wmma::col_major;
  run_gemm<__nv_bfloat16, R, R, 16, 16, 16>(48, 32, 64, false, 1.0f, false);
  run_gemm<__nv_bfloat16, R, C, 16, 16, 16>(48, 32, 64, false, 1.0f, false);
  run_gemm<__nv_bfloat16, C, R, 16, 16, 16>(48, 32, 64, false, 1.0f, false);
  run_gemm<__nv_bfloat16, C, C, 16, 16, 16>(48, 32, 64, false, 1.0f, false);
}

TEST(Wmma, ScaledAccumulatorStoredColumnMajorWithLoadedC) {
  using R = wmma::row_major;
  using C = wmma::col_major;
  run_gemm<__nv_bfloat16, R, C, 16, 16, 16>(48, 32, 64, false, 0.5f, true);
  run_gemm<__nv_bfloat16, C, R, 16, 16, 16>(48, 32, 64, true, 0.5f, true);
  run_gemm<__nv_bfloat16, R, R, 16, 16, 16>(32, 48, 32, true, 1.0f, false);
}

TEST(Wmma, HalfInputsFloatAccumulator) {
  using R = wmma::row_major;
  using C = wmma::col_major;
  run_gemm<__half, R, C, 16, 16, 16>(48, 32, 64, true, 1.0f, false);
  run_gemm<__half, C, R, 16, 16, 16>(32, 32, 48, false, 0.5f, true);
}

TEST(Wmma, OtherShapes) {
  using R = wmma::row_major;
  using C = wmma::col_major;
  // (Column-major A tiles of 8 rows, or row-major B tiles of 8 columns, would
  // start 16 bytes into a 32-byte unit: not allowed, so not used here.)
  run_gemm<__nv_bfloat16, R, C, 32, 8, 16>(64, 24, 32, true, 1.0f, false);
  run_gemm<__nv_bfloat16, R, R, 8, 32, 16>(24, 64, 48, false, 0.5f, true);
  run_gemm<__half, C, C, 32, 8, 16>(32, 16, 32, false, 1.0f, false);
  run_gemm<__half, R, C, 8, 32, 16>(16, 32, 32, true, 1.0f, true);
}

// Not a check: prints the emulated cost of one warp's mma_sync (with its two
// loads) for kernel authors sizing their tests.
TEST(Wmma, Throughput) {
  using R = wmma::row_major;
  using C = wmma::col_major;
  const int M = 128, N = 128, K = 256;
  double sec = 0.0;
  run_gemm<__nv_bfloat16, R, C, 16, 16, 16>(M, N, K, false, 1.0f, false, &sec);
  const double mmas = static_cast<double>(M / 16) * (N / 16) * (K / 16);
  std::printf("[ lsemu    ] %dx%dx%d bf16 GEMM kernel: %.0f warp mma_sync (+2 loads each) in "
              "%.4f s, %.1f us each\n",
              M, N, K, mmas, sec, sec / mmas * 1e6);
}

TEST(Wmma, FillFragment) {
  DevBuf<float> out(256);
  LS_EMU_LAUNCH(wmma_fill_kernel, 1, 32, 0, 0)(out.get());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (float v : out.to_host()) ASSERT_EQ(v, 32.5f);
}

TEST(Wmma, HalfAccumulator) {
  const std::vector<__half> a = random_matrix<__half>(16 * 32, 7);
  const std::vector<__half> b = random_matrix<__half>(32 * 16, 8);
  const std::vector<__half> c = random_matrix<__half>(16 * 16, 9);
  DevBuf<__half> da(a), db(b), dc(c), dd(256);
  LS_EMU_LAUNCH(wmma_half_acc_kernel, 1, 32, 0, 0)(da.get(), db.get(), dc.get(), dd.get());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<__half> got = dd.to_host();
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) {
      double ref = to_f(c[i * 16 + j]), mag = std::fabs(ref);
      for (int k = 0; k < 32; ++k) {
        const double p = static_cast<double>(to_f(a[i * 32 + k])) * to_f(b[k * 16 + j]);
        ref += p;
        mag += std::fabs(p);
      }
      // Two fp16 roundings (one per mma_sync) of values up to `mag`.
      EXPECT_NEAR(to_f(got[i * 16 + j]), ref, 2 * std::ldexp(std::max(mag, 1.0), -11) + 1e-6)
          << "D(" << i << "," << j << ")";
    }
  }
}

TEST(Wmma, ThroughSharedMemory) {
  const std::vector<__nv_bfloat16> a = random_matrix<__nv_bfloat16>(256, 21);
  const std::vector<__nv_bfloat16> b = random_matrix<__nv_bfloat16>(256, 22);
  DevBuf<__nv_bfloat16> da(a), db(b);
  DevBuf<float> out(16);
  LS_EMU_LAUNCH(wmma_smem_kernel, 1, 32, 0, 0)(da.get(), db.get(), out.get());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<float> got = out.to_host();
  for (int i = 0; i < 16; ++i) {
    double ref = 0.0, mag = 0.0;
    for (int j = 0; j < 16; ++j) {
      for (int k = 0; k < 16; ++k) {
        const double p = static_cast<double>(to_f(a[i * 16 + k])) * to_f(b[k * 16 + j]);
        ref += p;
        mag += std::fabs(p);
      }
    }
    EXPECT_NEAR(got[i], ref, 1e-4 * std::max(mag, 1e-3)) << "row " << i;
  }
}

TEST(Wmma, StoreWritesEachLanesShare) {
  DevBuf<int> saw_nan(std::vector<int>{0});
  LS_EMU_LAUNCH(wmma_store_without_syncwarp_kernel, 1, 32, 256 * sizeof(float), 0)(saw_nan.get());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(saw_nan.to_host()[0], 1) << "a read before __syncwarp should see unwritten elements";
}

// Death tests re-run the binary for the statement ("threadsafe"): fibers and
// the device allocator start fresh in the child.
class WmmaDeathTest : public testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(WmmaDeathTest, LdmNotMultipleOf8) {
  EXPECT_DEATH(
      {
        DevBuf<__nv_bfloat16> a(1024);
        LS_EMU_LAUNCH(wmma_bad_ldm_kernel, 1, 32, 0, 0)(a.get());
      },
      "load_matrix_sync\\(matrix_a\\) at block \\(0,0,0\\) thread \\(0,0,0\\).*ldm 20 is not a "
      "multiple of 8 elements");
}

TEST_F(WmmaDeathTest, PointerNot32ByteAligned) {
  EXPECT_DEATH(
      {
        DevBuf<__nv_bfloat16> a(1024);
        LS_EMU_LAUNCH(wmma_misaligned_kernel, 1, 32, 0, 0)(a.get());
      },
      "load_matrix_sync\\(matrix_a\\).*is not 32-byte \\(256-bit\\) aligned");
}

TEST_F(WmmaDeathTest, DivergentCalls) {
  EXPECT_DEATH(
      {
        DevBuf<float> out(256);
        LS_EMU_LAUNCH(wmma_divergent_kernel, 1, 32, 0, 0)(out.get());
      },
      "store_matrix_sync at .*lane 0 is at mma_sync instead|mma_sync at .*lane 16 is at store_matrix_sync instead");
}

TEST_F(WmmaDeathTest, DivergentAgainstSyncwarp) {
  EXPECT_DEATH(
      {
        DevBuf<float> out(256);
        LS_EMU_LAUNCH(wmma_against_syncwarp_kernel, 1, 32, 0, 0)(out.get());
      },
      "store_matrix_sync at .*lane 16 is at a shuffle, vote or __syncwarp instead");
}

TEST_F(WmmaDeathTest, LaneDependentFragment) {
  EXPECT_DEATH(
      {
        DevBuf<float> out(256);
        LS_EMU_LAUNCH(wmma_lane_dependent_kernel, 1, 32, 0, 0)(out.get());
      },
      "store_matrix_sync.*the fragment differs between lanes of the warp.*lane [0-9]+'s differs from lane 0's");
}

TEST_F(WmmaDeathTest, LoadOfTileWrittenWithoutSync) {
  EXPECT_DEATH(
      {
        DevBuf<float> out(32);
        LS_EMU_LAUNCH(wmma_load_without_sync_kernel, 1, 32, 0, 0)(out.get());
      },
      "lanes read different data from the same tile");
}

TEST_F(WmmaDeathTest, PartialWarp) {
  EXPECT_DEATH(
      {
        DevBuf<float> out(256);
        LS_EMU_LAUNCH(wmma_partial_warp_kernel, 1, 48, 0, 0)(out.get());
      },
      "warp 1 lane 0\\): called with live lanes 0x0000ffff");
}

TEST_F(WmmaDeathTest, OneLaneOnly) {
  EXPECT_DEATH(
      {
        DevBuf<float> out(256);
        LS_EMU_LAUNCH(wmma_lane0_only_kernel, 1, 32, 0, 0)(out.get());
      },
      "store_matrix_sync.*called with live lanes 0x00000001");
}

}  // namespace
