#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/attention/paged_cache_testing.h"

namespace loraserve::kernels {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using PagedCache = testing_util::PagedCacheOf<float>;

std::vector<float> random_vec(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

struct TokenList {
  std::vector<int32_t> seq, pos;
  void add(int32_t s, int32_t p) {
    seq.push_back(s);
    pos.push_back(p);
  }
  int64_t size() const { return static_cast<int64_t>(seq.size()); }
};

// Writes dense K/V rows of `tokens` into the cache with kv_append_ref.
Status append(PagedCache& cache, const TokenList& tokens, const std::vector<std::vector<float>>& k,
              const std::vector<std::vector<float>>& v) {
  const int32_t kd = cache.kv_dim;
  std::vector<float> kb, vb;
  for (int64_t t = 0; t < tokens.size(); ++t) {
    const auto& ks = k[tokens.seq[t]];
    const auto& vs = v[tokens.seq[t]];
    kb.insert(kb.end(), ks.begin() + tokens.pos[t] * kd, ks.begin() + (tokens.pos[t] + 1) * kd);
    vb.insert(vb.end(), vs.begin() + tokens.pos[t] * kd, vs.begin() + (tokens.pos[t] + 1) * kd);
  }
  KvAppendParams p;
  p.k = kb.data();
  p.v = vb.data();
  p.token_seq = tokens.seq.data();
  p.positions = tokens.pos.data();
  p.num_tokens = tokens.size();
  p.kv = cache.view();
  return kv_append_ref(p);
}

// Dense causal GQA attention in double for one (token, head).
std::vector<double> naive_attention(const float* q, const std::vector<float>& k,
                                    const std::vector<float>& v, int32_t pos, int64_t kv_head,
                                    int64_t d, int64_t kv_dim, double scale) {
  std::vector<double> s(pos + 1);
  for (int32_t j = 0; j <= pos; ++j) {
    double acc = 0.0;
    for (int64_t i = 0; i < d; ++i)
      acc += static_cast<double>(q[i]) * k[j * kv_dim + kv_head * d + i];
    s[j] = acc * scale;
  }
  const double mx = *std::max_element(s.begin(), s.end());
  double denom = 0.0;
  for (double& x : s) denom += (x = std::exp(x - mx));
  std::vector<double> out(d, 0.0);
  for (int32_t j = 0; j <= pos; ++j) {
    for (int64_t i = 0; i < d; ++i) out[i] += s[j] / denom * v[j * kv_dim + kv_head * d + i];
  }
  return out;
}

AttentionParams make_params(const std::vector<float>& q, std::vector<float>& out,
                            const TokenList& tokens, int64_t nq, int64_t nkv, int64_t d,
                            PagedCache& cache) {
  AttentionParams p;
  p.q = q.data();
  p.out = out.data();
  p.token_seq = tokens.seq.data();
  p.positions = tokens.pos.data();
  p.num_tokens = tokens.size();
  p.num_q_heads = nq;
  p.num_kv_heads = nkv;
  p.head_dim = d;
  p.scale = 1.0f / std::sqrt(static_cast<float>(d));
  p.kv = cache.view();
  return p;
}

// Mixed batch over 5 sequences (lengths 7, 10, 5, 1, 9; none a multiple of page_tokens 4):
// a 7-token prefill, two decodes, a chunked prefill of positions 2..4 and a 1-token prefill.
void run_mixed_batch(int64_t nq, int64_t nkv, int64_t d) {
  SCOPED_TRACE(testing::Message() << "nq=" << nq << " nkv=" << nkv << " d=" << d);
  const std::vector<int32_t> lens = {7, 10, 5, 1, 9};
  const int32_t kv_dim = static_cast<int32_t>(nkv * d);
  PagedCache cache({2, 4, 2, 1, 3}, kv_dim, 11);  // seq 1 owns a spare page
  std::mt19937 rng(12);
  std::vector<std::vector<float>> k, v;
  for (int32_t len : lens) {
    k.push_back(random_vec(len * kv_dim, rng));
    v.push_back(random_vec(len * kv_dim, rng));
  }
  TokenList history, batch;
  for (int32_t p = 0; p < 9; ++p) history.add(1, p);
  for (int32_t p = 0; p < 2; ++p) history.add(2, p);
  for (int32_t p = 0; p < 8; ++p) history.add(4, p);
  ASSERT_TRUE(append(cache, history, k, v).ok());
  batch.add(1, 9);
  for (int32_t p = 0; p < 7; ++p) batch.add(0, p);
  batch.add(4, 8);
  for (int32_t p = 2; p < 5; ++p) batch.add(2, p);
  batch.add(3, 0);
  ASSERT_TRUE(append(cache, batch, k, v).ok());

  const std::vector<float> q = random_vec(batch.size() * nq * d, rng);
  std::vector<float> out(q.size(), kNaN);
  ASSERT_TRUE(attention_ref(make_params(q, out, batch, nq, nkv, d, cache)).ok());
  const int64_t group = nq / nkv;
  for (int64_t t = 0; t < batch.size(); ++t) {
    for (int64_t h = 0; h < nq; ++h) {
      const int64_t off = (t * nq + h) * d;
      const int32_t s = batch.seq[t];
      const auto ref = naive_attention(q.data() + off, k[s], v[s], batch.pos[t], h / group, d,
                                       kv_dim, 1.0 / std::sqrt(static_cast<double>(d)));
      for (int64_t i = 0; i < d; ++i) {
        ASSERT_NEAR(out[off + i], ref[i], 1e-5) << "token " << t << " head " << h << " i " << i;
      }
    }
  }
}

TEST(AttentionRef, MixedPrefillDecodeBatchGqa) { run_mixed_batch(4, 2, 8); }
TEST(AttentionRef, MixedPrefillDecodeBatchMha) { run_mixed_batch(3, 3, 4); }
TEST(AttentionRef, MixedPrefillDecodeBatchMqa) { run_mixed_batch(4, 1, 16); }

TEST(KvAppendRef, WritesRowsWhereTheHeaderSaysAndNothingElse) {
  const int32_t kv_dim = 6;
  PagedCache cache({3, 1}, kv_dim, 21);
  std::mt19937 rng(22);
  std::vector<std::vector<float>> k = {random_vec(10 * kv_dim, rng), random_vec(3 * kv_dim, rng)};
  std::vector<std::vector<float>> v = {random_vec(10 * kv_dim, rng), random_vec(3 * kv_dim, rng)};
  TokenList tokens;
  for (int32_t p = 0; p < 3; ++p) tokens.add(1, p);
  for (int32_t p = 9; p >= 0; --p) tokens.add(0, p);  // order within a batch does not matter
  ASSERT_TRUE(append(cache, tokens, k, v).ok());
  for (int64_t t = 0; t < tokens.size(); ++t) {
    const int32_t s = tokens.seq[t], p = tokens.pos[t];
    for (int32_t c = 0; c < kv_dim; ++c) {
      ASSERT_EQ(cache.k_at(s, p)[c], k[s][p * kv_dim + c]);
      ASSERT_EQ(cache.v_at(s, p)[c], v[s][p * kv_dim + c]);
    }
  }
  const auto written =
      std::count_if(cache.pool.begin(), cache.pool.end(), [](float x) { return !std::isnan(x); });
  EXPECT_EQ(written, 13 * 2 * kv_dim) << "other layers, free pages and padding stay untouched";
}

TEST(AttentionRef, SingleTokenOutputIsItsValueRow) {
  const int64_t nq = 4, nkv = 2, d = 8;
  const int32_t kv_dim = nkv * d;
  PagedCache cache({1}, kv_dim, 31);
  std::mt19937 rng(32);
  std::vector<std::vector<float>> k = {random_vec(kv_dim, rng)}, v = {random_vec(kv_dim, rng)};
  TokenList tok;
  tok.add(0, 0);
  ASSERT_TRUE(append(cache, tok, k, v).ok());
  const std::vector<float> q = random_vec(nq * d, rng);
  std::vector<float> out(q.size());
  ASSERT_TRUE(attention_ref(make_params(q, out, tok, nq, nkv, d, cache)).ok());
  for (int64_t h = 0; h < nq; ++h) {
    for (int64_t i = 0; i < d; ++i) EXPECT_FLOAT_EQ(out[h * d + i], v[0][(h / 2) * d + i]);
  }
}

TEST(AttentionRef, LargeScoresDoNotOverflow) {
  const int64_t d = 4;
  PagedCache cache({1}, d, 41);
  std::vector<std::vector<float>> k = {std::vector<float>(2 * d, 100.0f)};
  std::vector<std::vector<float>> v = {{1, 1, 1, 1, 3, 3, 3, 3}};
  TokenList tok;
  tok.add(0, 0);
  tok.add(0, 1);
  ASSERT_TRUE(append(cache, tok, k, v).ok());
  const std::vector<float> q(2 * d, 100.0f);  // scores = 4e4 * scale = 2e4: exp would overflow
  std::vector<float> out(q.size());
  ASSERT_TRUE(attention_ref(make_params(q, out, tok, 1, 1, d, cache)).ok());
  // Token 1 sees two equal scores: (1 + 3) / 2 = 2.
  for (int64_t i = 0; i < d; ++i) {
    EXPECT_FLOAT_EQ(out[i], 1.0f);
    EXPECT_FLOAT_EQ(out[d + i], 2.0f);
  }
}

TEST(AttentionRef, PositionBeyondOwnedPagesIsOutOfRange) {
  const int64_t d = 4;
  PagedCache cache({2}, d, 51);  // 8 tokens of capacity
  std::vector<std::vector<float>> k = {std::vector<float>(9 * d, 1.0f)}, v = k;
  TokenList tok;
  tok.add(0, 8);
  EXPECT_EQ(append(cache, tok, k, v).code(), StatusCode::kOutOfRange);
  const std::vector<float> q(d, 1.0f);
  std::vector<float> out(d);
  EXPECT_EQ(attention_ref(make_params(q, out, tok, 1, 1, d, cache)).code(),
            StatusCode::kOutOfRange);
}

TEST(AttentionRef, RejectsBadParams) {
  const int64_t d = 4;
  PagedCache cache({1}, 2 * d, 61);
  TokenList tok;
  tok.add(0, 0);
  const std::vector<float> q(3 * d, 1.0f);
  std::vector<float> out(q.size());
  AttentionParams p = make_params(q, out, tok, 3, 2, d, cache);
  EXPECT_EQ(attention_ref(p).code(), StatusCode::kInvalidArgument) << "2 does not divide 3";
  p = make_params(q, out, tok, 2, 1, d, cache);
  EXPECT_EQ(attention_ref(p).code(), StatusCode::kInvalidArgument) << "kv_dim != nkv * d";
  p = make_params(q, out, tok, 2, 2, d, cache);
  p.scale = 0.0f;
  EXPECT_EQ(attention_ref(p).code(), StatusCode::kInvalidArgument) << "unset scale";
  p = make_params(q, out, tok, 2, 2, d, cache);
  p.q = nullptr;
  EXPECT_EQ(attention_ref(p).code(), StatusCode::kInvalidArgument) << "null q";
  p = make_params(q, out, tok, 2, 2, d, cache);
  p.kv.layer = 2;
  EXPECT_EQ(attention_ref(p).code(), StatusCode::kInvalidArgument) << "layer >= num_layers";
  TokenList bad_seq;
  bad_seq.add(1, 0);
  p = make_params(q, out, bad_seq, 2, 2, d, cache);
  EXPECT_EQ(attention_ref(p).code(), StatusCode::kInvalidArgument) << "sequence outside view";
}

}  // namespace
}  // namespace loraserve::kernels
