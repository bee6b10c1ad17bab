// The bf16 CUDA rope kernel against its CPU reference, run on the
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

#include "kernels/rope/rope.h"
#include "tests/gpu/gpu_test_util.h"

namespace loraserve::kernels {
namespace {

using gputest::DevBuf;
using gputest::expect_close;
using gputest::from_bf16;
using gputest::random_vec;
using gputest::rounded;
using gputest::to_bf16;

TEST(GpuBf16Rope, MatchesReference) {
  SKIP_WITHOUT_GPU();
  Llama3RopeScaling llama3;
  for (const Llama3RopeScaling* scaling : {static_cast<const Llama3RopeScaling*>(nullptr),
                                           static_cast<const Llama3RopeScaling*>(&llama3)}) {
    const int64_t rows = 50, nq = 8, nkv = 2, hd = 128;
    auto q = rounded(random_vec(rows * nq * hd, 21, -2.0f, 2.0f));
    auto k = rounded(random_vec(rows * nkv * hd, 22, -2.0f, 2.0f));
    std::mt19937 rng(23);
    std::vector<int32_t> pos(rows);
    for (auto& p : pos) p = static_cast<int32_t>(rng() % 9000);
    pos[0] = 0;
    auto inv_freq = rope_inv_freq(hd, 500000.0, scaling);
    std::vector<float> want_q = q, want_k = k;
    RopeParams ref{want_q.data(), want_k.data(), pos.data(), inv_freq.data(), rows, nq, nkv, hd};
    ASSERT_TRUE(rope_ref(ref).ok());
    DevBuf<uint16_t> dq(to_bf16(q)), dk(to_bf16(k));
    DevBuf<int32_t> dpos(pos);
    DevBuf<float> dinv(inv_freq);
    RopeBf16Params p{dq.p, dk.p, dpos.p, dinv.p, rows, nq, nkv, hd};
    ASSERT_TRUE(launch_rope_bf16(p, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expect_close(from_bf16(dq.host()), want_q, 2e-2f, 1e-2f, 1e-2, "rope_bf16 q");
    expect_close(from_bf16(dk.host()), want_k, 2e-2f, 1e-2f, 1e-2, "rope_bf16 k");
  }
}

}  // namespace
}  // namespace loraserve::kernels
