// The bf16 CUDA bias kernel against its CPU reference on bf16-rounded
// inputs, both modes, outputs poisoned first and every element checked.
// Every case skips itself where no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "kernels/bias/bias.h"
#include "tests/gpu/gpu_test_util.h"

namespace loraserve::kernels {
namespace {

using gputest::DevBuf;
using gputest::expect_close;
using gputest::from_bf16;
using gputest::random_vec;
using gputest::rounded;
using gputest::to_bf16;

TEST(GpuBf16Bias, AddMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{1, 64}, {37, 576}, {300, 1000}}) {
    const auto y0 = rounded(random_vec(rows * cols, 1, -3.0f, 3.0f));
    const auto b = rounded(random_vec(cols, 2, -2.0f, 2.0f));
    std::vector<float> want = y0;
    ASSERT_TRUE(bias_add_ref(BiasAddParams{want.data(), b.data(), rows, cols}).ok());
    DevBuf<uint16_t> dy(to_bf16(y0)), db(to_bf16(b));
    ASSERT_TRUE(
        launch_bias_bf16(BiasBf16Params{dy.p, db.p, rows, cols, BiasMode::kAdd}, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    // One bf16 rounding of the exact sum: within half an ulp (2^-8 relative).
    expect_close(from_bf16(dy.host()), want, 0.0f, 1.0f / 256, 4e-3, "bias add");
  }
}

TEST(GpuBf16Bias, BroadcastWritesTheBiasIntoEveryRow) {
  SKIP_WITHOUT_GPU();
  const int64_t rows = 19, cols = 200;
  const auto b = rounded(random_vec(cols, 3, -2.0f, 2.0f));
  DevBuf<uint16_t> dy(rows * cols), db(to_bf16(b));  // dy poisoned (NaN)
  ASSERT_TRUE(
      launch_bias_bf16(BiasBf16Params{dy.p, db.p, rows, cols, BiasMode::kBroadcast}, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> want;
  for (int64_t r = 0; r < rows; ++r) want.insert(want.end(), b.begin(), b.end());
  expect_close(from_bf16(dy.host()), want, 0.0f, 0.0f, 0.0, "bias broadcast");
}

TEST(GpuBf16BiasLaunch, EmptyIsANoOpAndBadSizesAreErrors) {
  // Runs without a GPU too.
  EXPECT_TRUE(launch_bias_bf16(BiasBf16Params{nullptr, nullptr, 0, 8}, nullptr).ok());
  EXPECT_EQ(launch_bias_bf16(BiasBf16Params{nullptr, nullptr, 4, 0}, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(launch_bias_bf16(BiasBf16Params{nullptr, nullptr, 4, 8}, nullptr).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve::kernels
