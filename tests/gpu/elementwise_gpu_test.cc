// CUDA kernels against their CPU references. Every case skips itself where
// no GPU is present (CI); on the GPU machine all must pass.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/silu_mul/silu_mul.h"

namespace loraserve::kernels {
namespace {

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device"

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-2.0f, 2.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

struct DeviceBuf {
  float* p = nullptr;
  explicit DeviceBuf(const std::vector<float>& h) {
    EXPECT_EQ(cudaMalloc(&p, h.size() * 4), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, h.data(), h.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  }
  explicit DeviceBuf(size_t n) {
    EXPECT_EQ(cudaMalloc(&p, n * 4), cudaSuccess);
    EXPECT_EQ(cudaMemset(p, 0xff, n * 4), cudaSuccess);  // poison: NaN
  }
  ~DeviceBuf() { cudaFree(p); }
  std::vector<float> host(size_t n) const {
    std::vector<float> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tol * (1.0f + std::fabs(want[i]))) << "element " << i;
  }
}

TEST(GpuRmsNorm, MatchesReference) {
  SKIP_WITHOUT_GPU();
  for (int64_t hidden : {64, 256, 4096, 5000}) {
    const int64_t rows = 37;
    auto x = random_vec(rows * hidden, 1);
    auto w = random_vec(hidden, 2);
    std::vector<float> want(rows * hidden);
    RmsNormParams ref{x.data(), w.data(), want.data(), rows, hidden, 1e-5f};
    ASSERT_TRUE(rmsnorm_ref(ref).ok());
    DeviceBuf dx(x), dw(w), dout(rows * hidden);
    RmsNormParams p{dx.p, dw.p, dout.p, rows, hidden, 1e-5f};
    ASSERT_TRUE(launch_rmsnorm(p, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expect_close(dout.host(rows * hidden), want, 1e-5f);
  }
}

TEST(GpuAddRmsNorm, MatchesReference) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 19, hidden = 4096;
  auto res = random_vec(rows * hidden, 3);
  auto delta = random_vec(rows * hidden, 4);
  auto w = random_vec(hidden, 5);
  std::vector<float> want_res = res, want(rows * hidden);
  AddRmsNormParams ref{want_res.data(), delta.data(), w.data(), want.data(), rows, hidden, 1e-6f};
  ASSERT_TRUE(add_rmsnorm_ref(ref).ok());
  DeviceBuf dres(res), dd(delta), dw(w), dout(rows * hidden);
  AddRmsNormParams p{dres.p, dd.p, dw.p, dout.p, rows, hidden, 1e-6f};
  ASSERT_TRUE(launch_add_rmsnorm(p, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_close(dres.host(rows * hidden), want_res, 1e-6f);
  expect_close(dout.host(rows * hidden), want, 1e-5f);
}

TEST(GpuSiluMul, MatchesReference) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 513, inter = 1000;
  auto g = random_vec(rows * inter, 6);
  auto u = random_vec(rows * inter, 7);
  std::vector<float> want(rows * inter);
  SiluMulParams ref{g.data(), u.data(), want.data(), rows, inter};
  ASSERT_TRUE(silu_mul_ref(ref).ok());
  DeviceBuf dg(g), du(u), dout(rows * inter);
  SiluMulParams p{dg.p, du.p, dout.p, rows, inter};
  ASSERT_TRUE(launch_silu_mul(p, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_close(dout.host(rows * inter), want, 1e-5f);
}

TEST(GpuLaunch, BadParamsAreStatusNotCrash) {
  // Runs without a GPU too: validation happens before any CUDA call.
  RmsNormParams p;
  EXPECT_EQ(launch_rmsnorm(p, nullptr).code(), StatusCode::kInvalidArgument);
  SiluMulParams s;
  EXPECT_EQ(launch_silu_mul(s, nullptr).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve::kernels
