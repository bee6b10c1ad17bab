#include "kernels/bias/bias.h"

#include <gtest/gtest.h>

#include <vector>

namespace loraserve::kernels {
namespace {

TEST(BiasAddRef, AddsTheRowToEveryRow) {
  std::vector<float> y = {1, 2, 3, 10, 20, 30};
  const std::vector<float> b = {0.5f, -2, 100};
  ASSERT_TRUE(bias_add_ref(BiasAddParams{y.data(), b.data(), 2, 3}).ok());
  EXPECT_EQ(y, (std::vector<float>{1.5f, 0, 103, 10.5f, 18, 130}));
}

TEST(BiasAddRef, ZeroRowsIsANoOpAndBadParamsAreErrors) {
  EXPECT_TRUE(bias_add_ref(BiasAddParams{nullptr, nullptr, 0, 4}).ok());
  std::vector<float> y(4), b(2);
  EXPECT_EQ(bias_add_ref(BiasAddParams{y.data(), nullptr, 2, 2}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(bias_add_ref(BiasAddParams{y.data(), b.data(), 2, 0}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(bias_add_ref(BiasAddParams{y.data(), b.data(), -1, 2}).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve::kernels
