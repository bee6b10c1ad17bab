// attention_cpu_tokens (every instruction set this CPU has) against a dense
// double-precision attention, over an f32 cache and over a bf16 cache that
// kv_append_bf16kv_cpu filled; the bf16 case's reference reads the rounded
// values, so both are held to f32 accuracy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/attention/attention.h"
#include "kernels/attention/paged_cache_testing.h"
#include "kernels/gemm/gemm_bf16.h"

namespace loraserve::kernels {
namespace {

template <typename T>
using Cache = testing_util::PagedCacheOf<T>;

// Dense causal attention of one (token, head) in double over f32 K/V rows.
std::vector<double> dense(const float* q, const std::vector<float>& k, const std::vector<float>& v,
                          int32_t pos, int64_t kv_off, int64_t d, int64_t kv_dim) {
  std::vector<double> s(pos + 1);
  for (int32_t j = 0; j <= pos; ++j) {
    double a = 0.0;
    for (int64_t i = 0; i < d; ++i) a += static_cast<double>(q[i]) * k[j * kv_dim + kv_off + i];
    s[j] = a / std::sqrt(static_cast<double>(d));
  }
  const double mx = *std::max_element(s.begin(), s.end());
  double den = 0.0;
  for (double& x : s) den += (x = std::exp(x - mx));
  std::vector<double> out(d, 0.0);
  for (int32_t j = 0; j <= pos; ++j) {
    for (int64_t i = 0; i < d; ++i) out[i] += s[j] / den * v[j * kv_dim + kv_off + i];
  }
  return out;
}

struct Batch {
  std::vector<int32_t> seq, pos;
};

// Sequences of 9, 3 and 14 tokens; the batch holds all of sequence 0 (a
// prefill), the last token of sequence 1 and positions 10..13 of sequence
// 2 (a chunked prefill); earlier tokens are appended first.
template <typename T>
void run(CpuIsa isa, int64_t nq, int64_t nkv, int64_t d) {
  SCOPED_TRACE(std::string(cpu_isa_name(isa)) + " nq=" + std::to_string(nq) + " nkv=" +
               std::to_string(nkv) + " d=" + std::to_string(d) +
               (sizeof(T) == 2 ? " bf16 cache" : " f32 cache"));
  const std::vector<int32_t> lens = {9, 3, 14};
  const int32_t kv_dim = static_cast<int32_t>(nkv * d);
  Cache<T> cache({3, 1, 4}, kv_dim, 5);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<std::vector<float>> k(3), v(3);
  for (int s = 0; s < 3; ++s) {
    for (int64_t i = 0; i < lens[s] * kv_dim; ++i) {
      k[s].push_back(u(rng));
      v[s].push_back(u(rng));
    }
  }
  Batch all;
  for (int s = 0; s < 3; ++s) {
    for (int32_t p = 0; p < lens[s]; ++p) {
      all.seq.push_back(s);
      all.pos.push_back(p);
    }
  }
  std::vector<float> kb, vb;
  for (size_t t = 0; t < all.seq.size(); ++t) {
    const auto& ks = k[all.seq[t]];
    const auto& vs = v[all.seq[t]];
    kb.insert(kb.end(), ks.begin() + all.pos[t] * kv_dim, ks.begin() + (all.pos[t] + 1) * kv_dim);
    vb.insert(vb.end(), vs.begin() + all.pos[t] * kv_dim, vs.begin() + (all.pos[t] + 1) * kv_dim);
  }
  KvAppendParamsOver<T> ap;
  ap.k = kb.data();
  ap.v = vb.data();
  ap.token_seq = all.seq.data();
  ap.positions = all.pos.data();
  ap.num_tokens = static_cast<int64_t>(all.seq.size());
  ap.kv = cache.view();
  if constexpr (sizeof(T) == 2) {
    ASSERT_TRUE(kv_append_bf16kv_cpu(ap, static_cast<int>(isa)).ok());
    // Every row lands where the header says, rounded to nearest even; the
    // reference below then reads the rounded values.
    for (int s = 0; s < 3; ++s) {
      for (int32_t p = 0; p < lens[s]; ++p) {
        for (int32_t i = 0; i < kv_dim; ++i) {
          float& kf = k[s][p * kv_dim + i];
          float& vf = v[s][p * kv_dim + i];
          ASSERT_EQ(cache.k_at(s, p)[i], f32_to_bf16(kf));
          ASSERT_EQ(cache.v_at(s, p)[i], f32_to_bf16(vf));
          kf = bf16_to_f32(f32_to_bf16(kf));
          vf = bf16_to_f32(f32_to_bf16(vf));
        }
      }
    }
  } else {
    ASSERT_TRUE(kv_append_ref(ap).ok());
  }

  Batch b;
  for (int32_t p = 0; p < 9; ++p) {
    b.seq.push_back(0);
    b.pos.push_back(p);
  }
  b.seq.push_back(1);
  b.pos.push_back(2);
  for (int32_t p = 10; p < 14; ++p) {
    b.seq.push_back(2);
    b.pos.push_back(p);
  }
  const int64_t n = static_cast<int64_t>(b.seq.size());
  std::vector<float> q(n * nq * d), out(q.size(), NAN);
  for (float& x : q) x = u(rng);
  AttentionParamsOver<T> p;
  p.q = q.data();
  p.out = out.data();
  p.token_seq = b.seq.data();
  p.positions = b.pos.data();
  p.num_tokens = n;
  p.num_q_heads = nq;
  p.num_kv_heads = nkv;
  p.head_dim = d;
  p.scale = 1.0f / std::sqrt(static_cast<float>(d));
  p.kv = cache.view();
  ASSERT_TRUE(validate_attention(p).ok());
  // Two slices, as two threads would take them.
  attention_cpu_tokens(p, static_cast<int>(isa), 0, 5);
  attention_cpu_tokens(p, static_cast<int>(isa), 5, n);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t h = 0; h < nq; ++h) {
      const int64_t off = (t * nq + h) * d;
      const auto ref = dense(q.data() + off, k[b.seq[t]], v[b.seq[t]], b.pos[t],
                             (h / (nq / nkv)) * d, d, kv_dim);
      for (int64_t i = 0; i < d; ++i) {
        ASSERT_NEAR(out[off + i], ref[i], 2e-5) << "token " << t << " head " << h << " i " << i;
      }
    }
  }
}

TEST(AttentionCpu, F32CacheMatchesDenseReference) {
  for (CpuIsa isa : runnable_cpu_isas()) {
    run<float>(isa, 4, 2, 64);  // the d=64 fast path: 2 q heads per KV head
    run<float>(isa, 6, 2, 64);  // 3 per KV head
    run<float>(isa, 8, 1, 64);  // 8: two passes of 4 heads
    run<float>(isa, 3, 1, 40);  // a partial vector at the end of each row
  }
}

TEST(AttentionCpu, Bf16CacheMatchesDenseReferenceOverRoundedRows) {
  for (CpuIsa isa : runnable_cpu_isas()) {
    run<uint16_t>(isa, 4, 2, 64);
    run<uint16_t>(isa, 5, 1, 64);  // 5 q heads per KV head: 4 + 1
    run<uint16_t>(isa, 3, 1, 40);
    run<uint16_t>(isa, 2, 2, 128);
  }
}

TEST(AttentionCpu, Bf16AppendRoundsTiesToEven) {
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: even mantissa, 1.0.
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: 1 + 2^-6.
  const std::vector<float> vals = {1.00390625f, 1.01171875f, -2.0f, 0.0f};
  const std::vector<uint16_t> want = {0x3F80, 0x3F82, 0xC000, 0x0000};
  for (CpuIsa isa : runnable_cpu_isas()) {
    Cache<uint16_t> cache({1}, 4, 9);
    const int32_t seq = 0, pos = 2;
    KvAppendBf16KvParams p;
    p.k = vals.data();
    p.v = vals.data();
    p.token_seq = &seq;
    p.positions = &pos;
    p.num_tokens = 1;
    p.kv = cache.view();
    ASSERT_TRUE(kv_append_bf16kv_cpu(p, static_cast<int>(isa)).ok());
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(cache.k_at(0, 2)[i], want[i]) << cpu_isa_name(isa) << " value " << i;
      EXPECT_EQ(cache.v_at(0, 2)[i], want[i]) << cpu_isa_name(isa) << " value " << i;
    }
    // Only that row was written.
    EXPECT_EQ(cache.k_at(0, 1)[0], 0xffff);
  }
}

TEST(AttentionCpu, Bf16AppendRefusesPositionsBeyondOwnedPages) {
  Cache<uint16_t> cache({1}, 4, 9);
  const std::vector<float> row(4, 1.0f);
  const int32_t seq = 0, pos = 4;  // one page of 4 tokens: 0..3
  KvAppendBf16KvParams p;
  p.k = row.data();
  p.v = row.data();
  p.token_seq = &seq;
  p.positions = &pos;
  p.num_tokens = 1;
  p.kv = cache.view();
  const Status s = kv_append_bf16kv_cpu(p, static_cast<int>(detect_cpu_isa()));
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange) << s.message();
  EXPECT_TRUE(std::all_of(cache.pool.begin(), cache.pool.end(), [](uint16_t x) { return x == 0xffff; }));
}

}  // namespace
}  // namespace loraserve::kernels
