// The bf16 CUDA rmsnorm kernel against its CPU reference, run on the
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

#include "kernels/rmsnorm/rmsnorm.h"
#include "tests/gpu/gpu_test_util.h"

namespace loraserve::kernels {
namespace {

using gputest::DevBuf;
using gputest::expect_close;
using gputest::from_bf16;
using gputest::random_vec;
using gputest::rounded;
using gputest::to_bf16;

TEST(GpuBf16RmsNorm, MatchesReference) {
  SKIP_WITHOUT_GPU();
  for (int64_t hidden : {64, 256, 4096, 5000}) {
    const int64_t rows = 37;
    auto x = rounded(random_vec(rows * hidden, 1, -2.0f, 2.0f));
    auto w = rounded(random_vec(hidden, 2, 0.5f, 1.5f));
    std::vector<float> want(rows * hidden);
    RmsNormParams ref{x.data(), w.data(), want.data(), rows, hidden, 1e-5f};
    ASSERT_TRUE(rmsnorm_ref(ref).ok());
    DevBuf<uint16_t> dx(to_bf16(x)), dw(to_bf16(w)), dout(rows * hidden);
    RmsNormBf16Params p{dx.p, dw.p, dout.p, rows, hidden, 1e-5f};
    ASSERT_TRUE(launch_rmsnorm_bf16(p, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expect_close(from_bf16(dout.host()), want, 1e-2f, 1e-2f, 1e-2, "rmsnorm_bf16");
  }
}

TEST(GpuBf16AddRmsNorm, MatchesReference) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 19, hidden = 4096;
  auto res = rounded(random_vec(rows * hidden, 3, -2.0f, 2.0f));
  auto delta = rounded(random_vec(rows * hidden, 4, -2.0f, 2.0f));
  auto w = rounded(random_vec(hidden, 5, 0.5f, 1.5f));
  std::vector<float> want_res = res, want(rows * hidden);
  AddRmsNormParams ref{want_res.data(), delta.data(), w.data(), want.data(), rows, hidden, 1e-6f};
  ASSERT_TRUE(add_rmsnorm_ref(ref).ok());
  DevBuf<uint16_t> dres(to_bf16(res)), dd(to_bf16(delta)), dw(to_bf16(w)), dout(rows * hidden);
  AddRmsNormBf16Params p{dres.p, dd.p, dw.p, dout.p, rows, hidden, 1e-6f};
  ASSERT_TRUE(launch_add_rmsnorm_bf16(p, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_close(from_bf16(dres.host()), want_res, 1e-2f, 1e-2f, 1e-2, "add_rmsnorm_bf16 residual");
  expect_close(from_bf16(dout.host()), want, 2e-2f, 2e-2f, 1e-2, "add_rmsnorm_bf16 out");
}

TEST(GpuBf16RmsNormLaunch, BadParamsAreStatusNotCrash) {
  // Runs without a GPU too: validation happens before any CUDA call.
  EXPECT_EQ(launch_rmsnorm_bf16(RmsNormBf16Params{nullptr, nullptr, nullptr, 1, 0, 1e-5f}, nullptr).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve::kernels
