// The bf16 CUDA silu mul kernel against its CPU reference, run on the
// bf16-rounded inputs (so only the kernel's own rounding and summation
// order differ). Outputs are poisoned first and every element is checked.
// Every case skips itself where no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "kernels/silu_mul/silu_mul.h"
#include "tests/gpu/gpu_test_util.h"

namespace loraserve::kernels {
namespace {

using gputest::DevBuf;
using gputest::expect_close;
using gputest::from_bf16;
using gputest::random_vec;
using gputest::rounded;
using gputest::to_bf16;

TEST(GpuBf16SiluMul, MatchesReference) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 513, inter = 1000;
  auto g = rounded(random_vec(rows * inter, 6, -4.0f, 4.0f));
  auto u = rounded(random_vec(rows * inter, 7, -2.0f, 2.0f));
  std::vector<float> want(rows * inter);
  SiluMulParams ref{g.data(), u.data(), want.data(), rows, inter};
  ASSERT_TRUE(silu_mul_ref(ref).ok());
  DevBuf<uint16_t> dg(to_bf16(g)), du(to_bf16(u)), dout(rows * inter);
  SiluMulBf16Params p{dg.p, du.p, dout.p, rows, inter};
  ASSERT_TRUE(launch_silu_mul_bf16(p, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_close(from_bf16(dout.host()), want, 1e-2f, 1e-2f, 1e-2, "silu_mul_bf16");
}

TEST(GpuBf16SiluMulLaunch, EmptyIsANoOp) {
  // Runs without a GPU too: nothing to launch for zero tokens.
  EXPECT_TRUE(launch_silu_mul_bf16(SiluMulBf16Params{nullptr, nullptr, nullptr, 0, 8}, nullptr).ok());
}

}  // namespace
}  // namespace loraserve::kernels
