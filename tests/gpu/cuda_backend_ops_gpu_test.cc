// The cuda backend op by op against the cpu backend, through the Backend
// interface (so the host plumbing is checked too: plan upload, KV views,
// the LoRA metadata ring, write_pages, gather, host sampling). When the
// engine-level comparison fails, this says which op is wrong.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "engine/backend.h"
#include "kernels/rope/rope.h"
#include "tests/gpu/gpu_test_util.h"

namespace loraserve {
namespace {

using gputest::expect_close;
using gputest::random_vec;
using gputest::rounded;

constexpr int64_t kHidden = 256, kNq = 4, kNkv = 2, kHd = 64, kLayers = 2, kVocab = 300;
constexpr int32_t kPageTokens = 4, kNumPages = 96;

// `segs` with the element type of the images this test writes for `b`.
std::vector<LoraSegmentRef> as_read_by(const Backend& b, std::vector<LoraSegmentRef> segs) {
  for (LoraSegmentRef& s : segs) s.dtype = b.adapter_dtype(/*exact_in_bf16=*/false);
  return segs;
}

std::vector<float> download(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.rows * t.cols));
  if (t.dtype == DType::kF32) {
    std::memcpy(out.data(), t.data, out.size() * sizeof(float));
    return out;
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint16_t> bits(out.size());
  EXPECT_EQ(cudaMemcpy(bits.data(), t.data, bits.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(bits[i]);
  return out;
}

struct Side {
  std::unique_ptr<Backend> b;
  Tensor table, norm_w, wq, wk, wv, x, res, delta, q, k, v, attn, normed, gate, up, act, scratch,
      rows, logits, lm;
};

// Plans: step 1 prefills three sequences (6, 1 and 9 tokens), step 2
// decodes one token of each. Block tables hold shuffled pages.
struct Plans {
  StepPlan p1, p2;
};

Plans make_plans(std::mt19937& rng) {
  const std::vector<int32_t> len1 = {6, 1, 9};
  std::vector<int32_t> perm(kNumPages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  // Pages 0..31 of the permutation go to KV; adapters take the tail.
  std::vector<int32_t> indptr = {0};
  std::vector<int32_t> page_ids;
  size_t next = 0;
  for (int32_t l : len1) {
    const int32_t blocks = (l + 1 + kPageTokens - 1) / kPageTokens;
    indptr.push_back(indptr.back() + blocks);
    for (int32_t b = 0; b < blocks * kLayers; ++b) page_ids.push_back(perm[next++]);
  }
  Plans p;
  for (StepPlan* sp : {&p.p1, &p.p2}) {
    sp->num_seqs = 3;
    sp->kv_block_indptr = indptr;
    sp->kv_page_ids = page_ids;
  }
  for (int32_t s = 0; s < 3; ++s) {
    for (int32_t pos = 0; pos < len1[s]; ++pos) {
      p.p1.token_ids.push_back(static_cast<int32_t>(rng() % kVocab));
      p.p1.positions.push_back(pos);
      p.p1.token_seq.push_back(s);
    }
    p.p1.sample_rows.push_back(static_cast<int32_t>(p.p1.token_ids.size()) - 1);
    p.p2.token_ids.push_back(static_cast<int32_t>(rng() % kVocab));
    p.p2.positions.push_back(len1[s]);
    p.p2.token_seq.push_back(s);
    p.p2.sample_rows.push_back(s);
  }
  for (StepPlan* sp : {&p.p1, &p.p2}) {
    sp->sampling.assign(sp->sample_rows.size(), kernels::SamplingConfig{});
    sp->sample_steps.assign(sp->sample_rows.size(), 0);
  }
  return p;
}

TEST(CudaBackendOps, EachOpMatchesCpuBackend) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(77);
  const Plans plans = make_plans(rng);
  const int64_t T = static_cast<int64_t>(plans.p1.token_ids.size());  // 16
  const int64_t qdim = kNq * kHd, kvdim = kNkv * kHd, inter = 384;

  BackendModelInfo info;
  info.hidden = kHidden;
  info.num_q_heads = kNq;
  info.num_kv_heads = kNkv;
  info.head_dim = kHd;
  info.num_layers = kLayers;
  info.vocab = kVocab;
  info.rope_inv_freq = kernels::rope_inv_freq(kHd, 10000.0, nullptr);

  // Host data, rounded to bf16 so both backends start from the same values.
  const auto table = rounded(random_vec(kVocab * kHidden, 1));
  const auto norm_w = rounded(random_vec(kHidden, 2, 0.5f, 1.5f));
  const float ws = 1.0f / std::sqrt(static_cast<float>(kHidden));
  auto scaled = [&](size_t n, uint32_t seed) {
    auto v = random_vec(n, seed, -ws * 1.7f, ws * 1.7f);
    return rounded(v);
  };
  const auto wq = scaled(qdim * kHidden, 3), wk = scaled(kvdim * kHidden, 4),
             wv = scaled(kvdim * kHidden, 5), lm = scaled(kVocab * kHidden, 6);
  const auto res0 = rounded(random_vec(T * kHidden, 7));
  const auto delta = rounded(random_vec(T * kHidden, 8));
  const auto gate = rounded(random_vec(T * inter, 9, -3.0f, 3.0f));
  const auto up = rounded(random_vec(T * inter, 10));

  // One adapter image, two adapters in it: ranks 8 and 16 on q (A [r, hidden], Bt [r, qdim]).
  // page_elems is 1024 on both backends (page_bytes scales with the dtype).
  const int64_t page_elems = 2ll * kPageTokens * kvdim;
  const int32_t r0 = 8, r1 = 16;
  const int64_t a0 = 5, bt0 = a0 + r0 * kHidden + 3, a1 = bt0 + r0 * qdim + 11,
                bt1 = a1 + r1 * kHidden;
  const int64_t image_elems = bt1 + r1 * qdim;
  auto image = rounded(random_vec(static_cast<size_t>(image_elems), 11, -0.2f, 0.2f));
  const int32_t image_pages = static_cast<int32_t>((image_elems + page_elems - 1) / page_elems);
  std::vector<int32_t> adapter_pages;
  {
    std::vector<int32_t> used(plans.p1.kv_page_ids);
    for (int32_t p = kNumPages - 1; p >= 0 && static_cast<int32_t>(adapter_pages.size()) < image_pages; --p) {
      if (std::find(used.begin(), used.end(), p) == used.end()) adapter_pages.push_back(p);
    }
    std::shuffle(adapter_pages.begin(), adapter_pages.end(), rng);
    ASSERT_EQ(static_cast<int32_t>(adapter_pages.size()), image_pages);
  }

  Side cpu, gpu;
  cpu.b = create_cpu_backend();
  auto g = create_backend("cuda");
  ASSERT_TRUE(g.ok()) << g.status();
  gpu.b = std::move(*g);

  for (Side* s : {&cpu, &gpu}) {
    Backend& b = *s->b;
    PoolGeometry geom;
    geom.num_pages = kNumPages;
    geom.kv_page_tokens = kPageTokens;
    geom.page_bytes = 2ll * kPageTokens * kvdim * static_cast<int64_t>(dtype_size(b.activation_dtype()));
    ASSERT_TRUE(b.init(info, geom).ok());
    auto up_f32 = [&](const std::vector<float>& v, int64_t rows, int64_t cols) {
      auto t = b.upload_f32(v.data(), rows, cols);
      EXPECT_TRUE(t.ok()) << t.status();
      return t.ok() ? *t : Tensor{};
    };
    auto alloc = [&](int64_t rows, int64_t cols) {
      auto t = b.allocate_activation(rows, cols);
      EXPECT_TRUE(t.ok()) << t.status();
      return t.ok() ? *t : Tensor{};
    };
    s->table = up_f32(table, kVocab, kHidden);
    s->norm_w = up_f32(norm_w, 1, kHidden);
    s->wq = up_f32(wq, qdim, kHidden);
    s->wk = up_f32(wk, kvdim, kHidden);
    s->wv = up_f32(wv, kvdim, kHidden);
    s->lm = up_f32(lm, kVocab, kHidden);
    s->res = up_f32(res0, T, kHidden);
    s->delta = up_f32(delta, T, kHidden);
    s->gate = up_f32(gate, T, inter);
    s->up = up_f32(up, T, inter);
    s->x = alloc(T, kHidden);
    s->normed = alloc(T, kHidden);
    s->q = alloc(T, qdim);
    s->k = alloc(T, kvdim);
    s->v = alloc(T, kvdim);
    s->attn = alloc(T, qdim);
    s->act = alloc(T, inter);
    s->scratch = alloc(T, 32);
    s->rows = alloc(3, kHidden);
    s->logits = alloc(3, kVocab);
    // The adapter image in the backend's dtype, written through write_pages.
    const DType image_dtype = b.adapter_dtype(/*exact_in_bf16=*/false);
    std::vector<char> bytes(static_cast<size_t>(image_elems) * dtype_size(image_dtype));
    convert_from_f32(image_dtype, image.data(), bytes.data(), image.size());
    ASSERT_TRUE(b.write_pages(adapter_pages, bytes.data(), bytes.size()).ok());
  }

  std::vector<LoraSegmentRef> segs(2);
  segs[0] = LoraSegmentRef{0, 6, r0, 2.0f, adapter_pages.data(), image_pages, a0, bt0};
  segs[1] = LoraSegmentRef{7, 16, r1, 0.5f, adapter_pages.data(), image_pages, a1, bt1};  // token 6 none

  auto both = [&](auto&& fn) {
    for (Side* s : {&cpu, &gpu}) {
      Status st = fn(*s);
      ASSERT_TRUE(st.ok()) << s->b->name() << ": " << st;
    }
  };
  auto compare = [&](const char* what, Tensor Side::*member, int64_t rows, float tol) {
    const Tensor tc = (cpu.*member).first_rows(rows), tg = (gpu.*member).first_rows(rows);
    expect_close(download(tg), download(tc), tol, tol, 2e-2, what);
  };

  // ---- step 1: prefill ----
  both([&](Side& s) { return s.b->begin_step(plans.p1); });
  both([&](Side& s) { return s.b->embedding(s.table, s.x.first_rows(T)); });
  compare("embedding", &Side::x, T, 0.0f);
  both([&](Side& s) { return s.b->rmsnorm(s.x, s.norm_w, 1e-5f, s.normed); });
  compare("rmsnorm", &Side::normed, T, 3e-2f);
  both([&](Side& s) { return s.b->add_rmsnorm(s.res, s.delta, s.norm_w, 1e-5f, s.x); });
  compare("add_rmsnorm residual", &Side::res, T, 3e-2f);
  compare("add_rmsnorm out", &Side::x, T, 3e-2f);
  both([&](Side& s) { return s.b->linear(s.x, s.wq, s.q); });
  compare("linear q", &Side::q, T, 3e-2f);
  both([&](Side& s) { return s.b->lora(s.x, s.q, as_read_by(*s.b, segs), s.scratch); });
  compare("linear q + lora", &Side::q, T, 3e-2f);
  both([&](Side& s) { return s.b->linear(s.x, s.wk, s.k); });
  both([&](Side& s) { return s.b->linear(s.x, s.wv, s.v); });
  compare("linear v", &Side::v, T, 3e-2f);
  both([&](Side& s) { return s.b->rope(s.q, s.k); });
  compare("rope q", &Side::q, T, 3e-2f);
  compare("rope k", &Side::k, T, 3e-2f);
  for (int32_t layer = 0; layer < kLayers; ++layer) {
    both([&](Side& s) { return s.b->kv_append(layer, s.k, s.v); });
  }
  both([&](Side& s) { return s.b->attention(1, s.q, s.attn); });
  compare("attention (prefill)", &Side::attn, T, 3e-2f);
  both([&](Side& s) { return s.b->silu_mul(s.gate, s.up, s.act); });
  compare("silu_mul", &Side::act, T, 3e-2f);
  both([&](Side& s) { return s.b->gather_sample_rows(s.x, s.rows); });
  compare("gather_sample_rows", &Side::rows, 3, 3e-2f);
  both([&](Side& s) { return s.b->linear(s.rows, s.lm, s.logits); });
  compare("lm_head", &Side::logits, 3, 3e-2f);
  SampleResult sc, sg;
  ASSERT_TRUE(cpu.b->sample(cpu.logits, true, &sc).ok());
  Status st = gpu.b->sample(gpu.logits, true, &sg);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(sg.tokens.size(), 3u);
  ASSERT_EQ(sg.logits.size(), sc.logits.size());
  for (size_t r = 0; r < 3; ++r) {
    std::vector<float> row(sc.logits.begin() + r * kVocab, sc.logits.begin() + (r + 1) * kVocab);
    std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<float>());
    if (row[0] - row[1] > 0.05f) {
      EXPECT_EQ(sg.tokens[r], sc.tokens[r]) << "row " << r;
    }
    EXPECT_NEAR(sg.logprobs[r], sc.logprobs[r], 5e-2f) << "row " << r;
  }

  // ---- step 2: decode one token per sequence over the cached pages ----
  const int64_t T2 = 3;
  both([&](Side& s) { return s.b->begin_step(plans.p2); });
  both([&](Side& s) { return s.b->embedding(s.table, s.x.first_rows(T2)); });
  both([&](Side& s) { return s.b->rmsnorm(s.x.first_rows(T2), s.norm_w, 1e-5f, s.normed.first_rows(T2)); });
  both([&](Side& s) { return s.b->linear(s.normed.first_rows(T2), s.wq, s.q.first_rows(T2)); });
  both([&](Side& s) { return s.b->linear(s.normed.first_rows(T2), s.wk, s.k.first_rows(T2)); });
  both([&](Side& s) { return s.b->linear(s.normed.first_rows(T2), s.wv, s.v.first_rows(T2)); });
  std::vector<LoraSegmentRef> segs2(1);
  segs2[0] = LoraSegmentRef{1, 3, r1, 1.0f, adapter_pages.data(), image_pages, a1, bt1};
  both([&](Side& s) {
    return s.b->lora(s.normed.first_rows(T2), s.q.first_rows(T2), as_read_by(*s.b, segs2),
                     s.scratch.first_rows(T2));
  });
  compare("decode q + lora", &Side::q, T2, 3e-2f);
  both([&](Side& s) { return s.b->rope(s.q.first_rows(T2), s.k.first_rows(T2)); });
  both([&](Side& s) { return s.b->kv_append(1, s.k.first_rows(T2), s.v.first_rows(T2)); });
  both([&](Side& s) { return s.b->attention(1, s.q.first_rows(T2), s.attn.first_rows(T2)); });
  compare("attention (decode)", &Side::attn, T2, 3e-2f);

  // A bad plan is a status, not a crash (position beyond the sequence's pages).
  StepPlan bad = plans.p2;
  bad.positions[0] = 1000;
  EXPECT_EQ(gpu.b->begin_step(bad).code(), StatusCode::kOutOfRange);
  for (Side* s : {&cpu, &gpu}) {
    for (Tensor Side::*m : {&Side::table, &Side::norm_w, &Side::wq, &Side::wk, &Side::wv, &Side::lm,
                            &Side::res, &Side::delta, &Side::gate, &Side::up, &Side::x,
                            &Side::normed, &Side::q, &Side::k, &Side::v, &Side::attn, &Side::act,
                            &Side::scratch, &Side::rows, &Side::logits}) {
      s->b->release(s->*m);
    }
  }
}

// Qwen shapes: q_dim (4 heads of 64 = 256) twice the hidden size (128, as
// Qwen3-0.6B's 2048 over 1024), q/k/v projections with a bias (Qwen2) and
// the per-head q/k RMSNorm (Qwen3), LoRA into q (out q_dim) and o (in
// q_dim), then rope, the paged KV and attention, prefill and decode.
TEST(CudaBackendOps, QwenOpsMatchCpuBackend) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(78);
  const Plans plans = make_plans(rng);
  const int64_t T = static_cast<int64_t>(plans.p1.token_ids.size());
  const int64_t hidden = 128, qdim = kNq * kHd, kvdim = kNkv * kHd;
  ASSERT_NE(qdim, hidden);

  BackendModelInfo info;
  info.hidden = hidden;
  info.num_q_heads = kNq;
  info.num_kv_heads = kNkv;
  info.head_dim = kHd;
  info.num_layers = kLayers;
  info.vocab = kVocab;
  info.rope_inv_freq = kernels::rope_inv_freq(kHd, 1000000.0, nullptr);

  const float ws = 1.0f / std::sqrt(static_cast<float>(hidden));
  const auto x = rounded(random_vec(T * hidden, 21));
  const auto wq = rounded(random_vec(qdim * hidden, 22, -ws * 1.7f, ws * 1.7f));
  const auto wk = rounded(random_vec(kvdim * hidden, 23, -ws * 1.7f, ws * 1.7f));
  const auto wv = rounded(random_vec(kvdim * hidden, 24, -ws * 1.7f, ws * 1.7f));
  const float wos = 1.0f / std::sqrt(static_cast<float>(qdim));
  const auto wo = rounded(random_vec(hidden * qdim, 25, -wos * 1.7f, wos * 1.7f));
  // Biases of the size of the projections' outputs, k's larger (as Qwen2's are).
  const auto bq = rounded(random_vec(qdim, 26, -1.0f, 1.0f));
  const auto bk = rounded(random_vec(kvdim, 27, -4.0f, 4.0f));
  const auto bv = rounded(random_vec(kvdim, 28, -0.5f, 0.5f));
  const auto qn = rounded(random_vec(kHd, 29, 0.3f, 2.0f));
  const auto kn = rounded(random_vec(kHd, 30, 0.3f, 2.0f));

  // Adapter image: rank 8 on q (A [8, hidden], Bt [8, qdim]) and rank 16 on
  // o (A [16, qdim], Bt [16, hidden]).
  const int64_t page_elems = 2ll * kPageTokens * kvdim;
  const int32_t rq = 8, ro = 16;
  const int64_t aq = 0, btq = aq + rq * hidden, ao = btq + rq * qdim, bto = ao + ro * qdim;
  const int64_t image_elems = bto + ro * hidden;
  const auto image = rounded(random_vec(static_cast<size_t>(image_elems), 31, -0.2f, 0.2f));
  const int32_t image_pages = static_cast<int32_t>((image_elems + page_elems - 1) / page_elems);
  std::vector<int32_t> adapter_pages;
  for (int32_t p = kNumPages - 1;
       p >= 0 && static_cast<int32_t>(adapter_pages.size()) < image_pages; --p) {
    if (std::find(plans.p1.kv_page_ids.begin(), plans.p1.kv_page_ids.end(), p) ==
        plans.p1.kv_page_ids.end()) {
      adapter_pages.push_back(p);
    }
  }
  ASSERT_EQ(static_cast<int32_t>(adapter_pages.size()), image_pages);

  struct Q {
    std::unique_ptr<Backend> b;
    Tensor x, wq, wk, wv, wo, bq, bk, bv, qn, kn, q, k, v, attn, o, scratch;
  };
  Q cpu, gpu;
  cpu.b = create_cpu_backend();
  auto g = create_backend("cuda");
  ASSERT_TRUE(g.ok()) << g.status();
  gpu.b = std::move(*g);
  for (Q* s : {&cpu, &gpu}) {
    Backend& b = *s->b;
    PoolGeometry geom;
    geom.num_pages = kNumPages;
    geom.kv_page_tokens = kPageTokens;
    geom.page_bytes =
        2ll * kPageTokens * kvdim * static_cast<int64_t>(dtype_size(b.activation_dtype()));
    ASSERT_TRUE(b.init(info, geom).ok());
    auto up = [&](const std::vector<float>& v, int64_t rows, int64_t cols) {
      auto t = b.upload_f32(v.data(), rows, cols);
      EXPECT_TRUE(t.ok()) << t.status();
      return t.ok() ? *t : Tensor{};
    };
    auto alloc = [&](int64_t rows, int64_t cols) {
      auto t = b.allocate_activation(rows, cols);
      EXPECT_TRUE(t.ok()) << t.status();
      return t.ok() ? *t : Tensor{};
    };
    s->x = up(x, T, hidden);
    s->wq = up(wq, qdim, hidden);
    s->wk = up(wk, kvdim, hidden);
    s->wv = up(wv, kvdim, hidden);
    s->wo = up(wo, hidden, qdim);
    s->bq = up(bq, 1, qdim);
    s->bk = up(bk, 1, kvdim);
    s->bv = up(bv, 1, kvdim);
    s->qn = up(qn, 1, kHd);
    s->kn = up(kn, 1, kHd);
    s->q = alloc(T, qdim);
    s->k = alloc(T, kvdim);
    s->v = alloc(T, kvdim);
    s->attn = alloc(T, qdim);
    s->o = alloc(T, hidden);
    s->scratch = alloc(T, 32);
    const DType image_dtype = b.adapter_dtype(/*exact_in_bf16=*/false);
    std::vector<char> bytes(static_cast<size_t>(image_elems) * dtype_size(image_dtype));
    convert_from_f32(image_dtype, image.data(), bytes.data(), image.size());
    ASSERT_TRUE(b.write_pages(adapter_pages, bytes.data(), bytes.size()).ok());
  }
  const std::vector<LoraSegmentRef> segs_q = {
      LoraSegmentRef{0, 7, rq, 2.0f, adapter_pages.data(), image_pages, aq, btq},
      LoraSegmentRef{7, 16, rq, 0.5f, adapter_pages.data(), image_pages, aq, btq}};
  const std::vector<LoraSegmentRef> segs_o = {
      LoraSegmentRef{3, 16, ro, 1.0f, adapter_pages.data(), image_pages, ao, bto}};

  auto both = [&](auto&& fn) {
    for (Q* s : {&cpu, &gpu}) {
      Status st = fn(*s);
      ASSERT_TRUE(st.ok()) << s->b->name() << ": " << st;
    }
  };
  auto compare = [&](const char* what, Tensor Q::*member, int64_t rows, float tol) {
    expect_close(download((gpu.*member).first_rows(rows)), download((cpu.*member).first_rows(rows)),
                 tol, tol, 2e-2, what);
  };
  auto layer = [&](int64_t n, int32_t l) {
    both([&](Q& s) { return s.b->linear_bias(s.x.first_rows(n), s.wq, s.bq, s.q.first_rows(n)); });
    compare("linear_bias q", &Q::q, n, 3e-2f);
    both([&](Q& s) {
      return s.b->lora(s.x.first_rows(n), s.q.first_rows(n),
                       as_read_by(*s.b, n == T ? segs_q
                                               : std::vector<LoraSegmentRef>{LoraSegmentRef{
                                                     1, 3, rq, 2.0f, adapter_pages.data(),
                                                     image_pages, aq, btq}}),
                       s.scratch.first_rows(n));
    });
    compare("linear_bias q + lora", &Q::q, n, 3e-2f);
    both([&](Q& s) { return s.b->linear_bias(s.x.first_rows(n), s.wk, s.bk, s.k.first_rows(n)); });
    compare("linear_bias k", &Q::k, n, 6e-2f);
    both([&](Q& s) { return s.b->linear_bias(s.x.first_rows(n), s.wv, s.bv, s.v.first_rows(n)); });
    compare("linear_bias v", &Q::v, n, 3e-2f);
    both([&](Q& s) {
      return s.b->qk_norm(s.q.first_rows(n), s.k.first_rows(n), s.qn, s.kn, 1e-6f);
    });
    compare("qk_norm q", &Q::q, n, 3e-2f);
    compare("qk_norm k", &Q::k, n, 3e-2f);
    both([&](Q& s) { return s.b->rope(s.q.first_rows(n), s.k.first_rows(n)); });
    compare("rope q", &Q::q, n, 3e-2f);
    both([&](Q& s) { return s.b->kv_append(l, s.k.first_rows(n), s.v.first_rows(n)); });
    both([&](Q& s) { return s.b->attention(l, s.q.first_rows(n), s.attn.first_rows(n)); });
    compare(n == T ? "attention (prefill)" : "attention (decode)", &Q::attn, n, 3e-2f);
    both([&](Q& s) { return s.b->linear(s.attn.first_rows(n), s.wo, s.o.first_rows(n)); });
    if (n == T) {
      both([&](Q& s) { return s.b->lora(s.attn, s.o, as_read_by(*s.b, segs_o), s.scratch); });
    }
    compare("o projection (in q_dim) + lora", &Q::o, n, 3e-2f);
  };
  both([&](Q& s) { return s.b->begin_step(plans.p1); });
  layer(T, 0);
  both([&](Q& s) { return s.b->begin_step(plans.p2); });
  layer(3, 0);

  // A bias or norm weight of the wrong size is a status on both backends.
  for (Q* s : {&cpu, &gpu}) {
    EXPECT_EQ(s->b->linear_bias(s->x, s->wq, s->bk, s->q).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s->b->qk_norm(s->q, s->k, s->bq, s->kn, 1e-6f).code(), StatusCode::kInvalidArgument);
  }
  for (Q* s : {&cpu, &gpu}) {
    for (Tensor Q::*m : {&Q::x, &Q::wq, &Q::wk, &Q::wv, &Q::wo, &Q::bq, &Q::bk, &Q::bv, &Q::qn,
                         &Q::kn, &Q::q, &Q::k, &Q::v, &Q::attn, &Q::o, &Q::scratch}) {
      s->b->release(s->*m);
    }
  }
}

}  // namespace
}  // namespace loraserve
