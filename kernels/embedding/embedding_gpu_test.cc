// The bf16 CUDA embedding kernel against its CPU reference, run on the
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

#include "kernels/embedding/embedding.h"
#include "tests/gpu/gpu_test_util.h"

namespace loraserve::kernels {
namespace {

using gputest::DevBuf;
using gputest::expect_close;
using gputest::from_bf16;
using gputest::random_vec;
using gputest::rounded;
using gputest::to_bf16;

TEST(GpuBf16Embedding, MatchesReferenceExactly) {
  SKIP_WITHOUT_GPU();
  const int64_t vocab = 1000, hidden = 320, rows = 77;
  auto table = rounded(random_vec(vocab * hidden, 11));
  std::mt19937 rng(12);
  std::vector<int32_t> ids(rows);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
  ids[0] = 0;
  ids[1] = static_cast<int32_t>(vocab - 1);
  std::vector<float> want(rows * hidden);
  EmbeddingParams ref{table.data(), ids.data(), want.data(), rows, hidden, vocab};
  ASSERT_TRUE(embedding_ref(ref).ok());
  DevBuf<uint16_t> dt(to_bf16(table)), dout(rows * hidden);
  DevBuf<int32_t> dids(ids);
  EmbeddingBf16Params p{dt.p, dids.p, dout.p, rows, hidden, vocab};
  ASSERT_TRUE(launch_embedding_bf16(p, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_close(from_bf16(dout.host()), want, 0.0f, 0.0f, 0.0, "embedding");
}

}  // namespace
}  // namespace loraserve::kernels
