// The bf16 CUDA per-head q/k RMSNorm against its CPU reference on
// bf16-rounded inputs: head_dim 64 and 128 (Qwen3), odd sizes that leave
// lanes idle, GQA and MHA head counts, row counts that leave a block
// partly empty. Every element is checked. Skips where no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/qk_norm/qk_norm.h"
#include "tests/gpu/gpu_test_util.h"

namespace loraserve::kernels {
namespace {

using gputest::DevBuf;
using gputest::expect_close;
using gputest::from_bf16;
using gputest::random_vec;
using gputest::rounded;
using gputest::to_bf16;

struct Shape {
  int64_t tokens, nq, nkv, hd;
};

TEST(GpuBf16QkNorm, MatchesReference) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 1;
  for (const Shape& s : {Shape{1, 8, 2, 128}, Shape{13, 4, 2, 64}, Shape{7, 3, 3, 40},
                         Shape{5, 2, 1, 200}, Shape{33, 16, 8, 128}}) {
    const std::string what = "qk_norm T" + std::to_string(s.tokens) + " nq" + std::to_string(s.nq) +
                             " nkv" + std::to_string(s.nkv) + " hd" + std::to_string(s.hd);
    // Heads of different scales, as real q/k projections have.
    auto q = rounded(random_vec(s.tokens * s.nq * s.hd, seed++, -6.0f, 6.0f));
    auto k = rounded(random_vec(s.tokens * s.nkv * s.hd, seed++, -0.3f, 0.3f));
    const auto qw = rounded(random_vec(s.hd, seed++, 0.2f, 2.0f));
    const auto kw = rounded(random_vec(s.hd, seed++, 0.2f, 2.0f));
    DevBuf<uint16_t> dq(to_bf16(q)), dk(to_bf16(k)), dqw(to_bf16(qw)), dkw(to_bf16(kw));
    QkNormParams ref{q.data(), k.data(), qw.data(), kw.data(), s.tokens, s.nq, s.nkv, s.hd, 1e-6f};
    ASSERT_TRUE(qk_norm_ref(ref).ok());
    QkNormBf16Params p{dq.p, dk.p, dqw.p, dkw.p, s.tokens, s.nq, s.nkv, s.hd, 1e-6f};
    ASSERT_TRUE(launch_qk_norm_bf16(p, nullptr).ok()) << what;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    // Two bf16 roundings (x * inv, then * weight): about 2^-8 relative.
    expect_close(from_bf16(dq.host()), q, 1e-3f, 1.0f / 100, 6e-3, (what + " q").c_str());
    expect_close(from_bf16(dk.host()), k, 1e-3f, 1.0f / 100, 6e-3, (what + " k").c_str());
  }
}

TEST(GpuBf16QkNormLaunch, EmptyIsANoOpAndBadSizesAreErrors) {
  // Runs without a GPU too.
  QkNormBf16Params p;
  p.num_q_heads = 2;
  p.num_kv_heads = 1;
  p.head_dim = 64;
  EXPECT_TRUE(launch_qk_norm_bf16(p, nullptr).ok());
  p.num_tokens = 3;
  EXPECT_EQ(launch_qk_norm_bf16(p, nullptr).code(), StatusCode::kInvalidArgument);  // null
  p.head_dim = 2048;
  EXPECT_EQ(launch_qk_norm_bf16(p, nullptr).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve::kernels
