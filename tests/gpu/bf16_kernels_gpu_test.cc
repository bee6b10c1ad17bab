// The bf16 CUDA kernels against their CPU references, run on the
// bf16-rounded inputs (so only the kernel's own rounding and summation
// order differ). Outputs are poisoned first and every element is checked.
// Every case skips itself where no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/embedding/embedding.h"
#include "kernels/lora/lora_paged.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/rope/rope.h"
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

// A paged KV cache with shuffled pages and a padded page stride; a batch
// of sequences each contributing its last `n_new` positions (pure prefill,
// chunked prefill over cached pages, decode), mixed in one launch.
struct AttnCase {
  int32_t page_tokens;
  int64_t nq, nkv, hd;
  std::vector<int32_t> lengths;  // total length of each sequence after this step
  std::vector<int32_t> n_new;    // tokens of each sequence in this step
};

void run_attention_case(const AttnCase& c, uint32_t seed) {
  const int32_t num_layers = 3, layer = 1;
  const int32_t kv_dim = static_cast<int32_t>(c.nkv * c.hd);
  const int64_t stride = 2ll * c.page_tokens * kv_dim + 24;  // padded on purpose
  const int32_t num_seqs = static_cast<int32_t>(c.lengths.size());
  std::vector<int32_t> indptr(num_seqs + 1, 0);
  for (int32_t s = 0; s < num_seqs; ++s) {
    const int32_t blocks = (c.lengths[s] + c.page_tokens - 1) / c.page_tokens + (s % 2);  // spare
    indptr[s + 1] = indptr[s] + blocks;
  }
  const int32_t total_blocks = indptr[num_seqs];
  const int32_t num_pages = total_blocks * num_layers + 7;
  std::vector<int32_t> perm(num_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> page_ids(perm.begin(), perm.begin() + total_blocks * num_layers);

  // The pool: random everywhere (earlier positions count as cached).
  auto pool = rounded(random_vec(static_cast<size_t>(num_pages) * stride, seed + 1, -1.0f, 1.0f));
  std::vector<int32_t> token_seq, positions;
  for (int32_t s = 0; s < num_seqs; ++s) {
    for (int32_t p = c.lengths[s] - c.n_new[s]; p < c.lengths[s]; ++p) {
      token_seq.push_back(s);
      positions.push_back(p);
    }
  }
  const int64_t T = static_cast<int64_t>(token_seq.size());
  auto k = rounded(random_vec(T * kv_dim, seed + 2, -1.0f, 1.0f));
  auto v = rounded(random_vec(T * kv_dim, seed + 3, -1.0f, 1.0f));
  auto q = rounded(random_vec(T * c.nq * c.hd, seed + 4, -2.0f, 2.0f));
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));

  // Reference on the host.
  std::vector<float> ref_pool = pool;
  PagedKvView view;
  view.pool = ref_pool.data();
  view.page_stride = stride;
  view.page_tokens = c.page_tokens;
  view.kv_dim = kv_dim;
  view.num_layers = num_layers;
  view.layer = layer;
  view.block_indptr = indptr.data();
  view.page_ids = page_ids.data();
  view.num_seqs = num_seqs;
  KvAppendParams ap{k.data(), v.data(), token_seq.data(), positions.data(), T, view};
  ASSERT_TRUE(kv_append_ref(ap).ok());
  std::vector<float> want(T * c.nq * c.hd);
  AttentionParams at{q.data(), want.data(), token_seq.data(), positions.data(), T, c.nq, c.nkv,
                     c.hd, scale, view};
  ASSERT_TRUE(attention_ref(at).ok());

  // Device.
  DevBuf<uint16_t> dpool(to_bf16(pool)), dk(to_bf16(k)), dv(to_bf16(v)), dq(to_bf16(q));
  DevBuf<uint16_t> dout(T * c.nq * c.hd);
  DevBuf<int32_t> dseq(token_seq), dpos(positions), dind(indptr), dpages(page_ids);
  PagedKvViewBf16 dview;
  dview.pool = dpool.p;
  dview.page_stride = stride;
  dview.page_tokens = c.page_tokens;
  dview.kv_dim = kv_dim;
  dview.num_layers = num_layers;
  dview.layer = layer;
  dview.block_indptr = dind.p;
  dview.page_ids = dpages.p;
  dview.num_seqs = num_seqs;
  KvAppendBf16Params dap{dk.p, dv.p, dseq.p, dpos.p, T, dview};
  ASSERT_TRUE(launch_kv_append_bf16(dap, nullptr).ok());
  AttentionBf16Params dat{dq.p, dout.p, dseq.p, dpos.p, T, c.nq, c.nkv, c.hd, scale, dview};
  ASSERT_TRUE(launch_attention_bf16(dat, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // The whole pool: the new rows in place, nothing else touched (exact, a copy).
  expect_close(from_bf16(dpool.host()), ref_pool, 0.0f, 0.0f, 0.0, "kv_append_bf16 pool");
  expect_close(from_bf16(dout.host()), want, 1e-2f, 2e-2f, 1e-2, "attention_bf16");
}

TEST(GpuBf16Attention, PrefillDecodeMixedShuffledPages) {
  SKIP_WITHOUT_GPU();
  // seq 0: decode at 0 (first token), 1: decode at 16 (new page), 2: full
  // prefill, 3: chunked prefill over cached pages, 4: long decode.
  run_attention_case({16, 8, 2, 64, {1, 17, 40, 100, 300}, {1, 1, 40, 23, 1}}, 100);
  run_attention_case({16, 32, 8, 128, {5, 33, 129, 257}, {5, 1, 64, 1}}, 200);
  run_attention_case({5, 4, 4, 128, {1, 2, 11, 50}, {1, 2, 3, 1}}, 300);   // MHA, odd page size
  run_attention_case({16, 12, 4, 96, {600, 7}, {512, 7}}, 400);            // 512-token chunk, hd 96
  run_attention_case({8, 2, 1, 40, {9, 30}, {9, 1}}, 500);                 // head_dim 40 (< 64, odd lanes)
}

// ---- paged LoRA ----

struct HostAdapter {
  int32_t rank;
  int64_t a_offset, bt_offset;
  std::vector<int32_t> pages;  // image order
};

void run_lora_case(int64_t num_tokens, int64_t in_dim, int64_t out_dim, int64_t page_elems,
                   uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<int32_t> rank_choices = {8, 16, 24, 32, 64, 128};
  const int num_adapters = 6;
  const int64_t v_stride = 128;
  // Adapter images: [pad][A rank x in][pad][Bt rank x out], spread over shuffled pool pages.
  std::vector<HostAdapter> adapters(num_adapters);
  int32_t total_pages = 0;
  std::vector<int64_t> image_elems(num_adapters);
  for (int a = 0; a < num_adapters; ++a) {
    HostAdapter& h = adapters[a];
    h.rank = rank_choices[(a + seed) % rank_choices.size()];
    h.a_offset = 13 + a;
    h.bt_offset = h.a_offset + h.rank * in_dim + 7;
    image_elems[a] = h.bt_offset + h.rank * out_dim;
    total_pages += static_cast<int32_t>((image_elems[a] + page_elems - 1) / page_elems);
  }
  const int32_t num_pages = total_pages + 5;
  std::vector<int32_t> perm(num_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  int32_t next = 0;
  for (int a = 0; a < num_adapters; ++a) {
    const int32_t n = static_cast<int32_t>((image_elems[a] + page_elems - 1) / page_elems);
    adapters[a].pages.assign(perm.begin() + next, perm.begin() + next + n);
    next += n;
  }
  // Weights ~ U(-1,1)/sqrt(fan_in) so v and the delta stay O(1).
  auto pool = rounded(random_vec(static_cast<size_t>(num_pages) * page_elems, seed + 1, -1.0f, 1.0f));
  const float a_scale = 1.0f / std::sqrt(static_cast<float>(in_dim));
  for (float& x : pool) x = bf16_to_f32(f32_to_bf16(x * a_scale * 4.0f));

  // Segments: random lengths, some gaps (tokens without an adapter).
  std::vector<PagedLoraSegment> segs;
  std::vector<PagedLoraSegmentDev> dsegs;
  std::vector<int32_t> all_pages;
  int32_t t = 0;
  while (t < num_tokens) {
    const int32_t len = 1 + static_cast<int32_t>(rng() % std::max<int64_t>(1, num_tokens / 4));
    const int32_t end = static_cast<int32_t>(std::min<int64_t>(num_tokens, t + len));
    if (rng() % 5 != 0) {  // else: a gap
      const HostAdapter& h = adapters[rng() % num_adapters];
      PagedLoraSegment s;
      s.begin = t;
      s.end = end;
      s.rank = h.rank;
      s.scale = 0.5f + static_cast<float>(rng() % 100) / 50.0f;
      s.page_ids = h.pages.data();
      s.a_offset = h.a_offset;
      s.bt_offset = h.bt_offset;
      segs.push_back(s);
      PagedLoraSegmentDev d;
      d.begin = s.begin;
      d.end = s.end;
      d.rank = s.rank;
      d.scale = s.scale;
      d.page_begin = static_cast<int32_t>(all_pages.size());
      d.num_pages = static_cast<int32_t>(h.pages.size());
      d.a_offset = s.a_offset;
      d.bt_offset = s.bt_offset;
      dsegs.push_back(d);
      all_pages.insert(all_pages.end(), h.pages.begin(), h.pages.end());
    }
    t = end;
  }
  if (segs.empty()) return;
  int32_t max_rank = 0;
  for (const auto& s : segs) max_rank = std::max(max_rank, s.rank);

  auto x = rounded(random_vec(num_tokens * in_dim, seed + 2, -1.0f, 1.0f));
  auto y0 = rounded(random_vec(num_tokens * out_dim, seed + 3, -1.0f, 1.0f));

  // Shrink.
  std::vector<float> v_ref(num_tokens * v_stride, 0.0f);
  PagedLoraShrinkParams sp{x.data(), in_dim, v_ref.data(), v_stride, in_dim, num_tokens,
                           pool.data(), page_elems, segs.data(), static_cast<int32_t>(segs.size())};
  ASSERT_TRUE(lora_shrink_paged_ref(sp).ok());
  DevBuf<uint16_t> dpool(to_bf16(pool)), dx(to_bf16(x)), dv(num_tokens * v_stride);
  DevBuf<uint16_t> dy(to_bf16(y0));
  DevBuf<PagedLoraSegmentDev> dseg(dsegs);
  DevBuf<int32_t> dpages(all_pages);
  PagedLoraShrinkBf16Params dsp;
  dsp.x = dx.p;
  dsp.x_stride = in_dim;
  dsp.v = dv.p;
  dsp.v_stride = v_stride;
  dsp.in_dim = in_dim;
  dsp.num_tokens = num_tokens;
  dsp.pool = dpool.p;
  dsp.page_elems = page_elems;
  dsp.segments = dseg.p;
  dsp.page_ids = dpages.p;
  dsp.num_segments = static_cast<int32_t>(dsegs.size());
  dsp.max_rank = max_rank;
  ASSERT_TRUE(launch_lora_shrink_paged_bf16(dsp, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  auto v_dev = from_bf16(dv.host());
  // Compare the columns each token's segment defines.
  std::vector<float> got_v, want_v;
  for (const auto& s : segs) {
    for (int32_t tt = s.begin; tt < s.end; ++tt) {
      for (int32_t j = 0; j < s.rank; ++j) {
        got_v.push_back(v_dev[tt * v_stride + j]);
        want_v.push_back(v_ref[tt * v_stride + j]);
      }
    }
  }
  expect_close(got_v, want_v, 2e-2f, 1e-2f, 1e-2, "lora_shrink_bf16");

  // Expand from the device's v (exactly representable), so only expand's error shows.
  std::vector<float> v_in(num_tokens * v_stride, 0.0f);
  for (const auto& s : segs) {
    for (int32_t tt = s.begin; tt < s.end; ++tt) {
      for (int32_t j = 0; j < s.rank; ++j) v_in[tt * v_stride + j] = v_dev[tt * v_stride + j];
    }
  }
  std::vector<float> y_ref = y0;
  PagedLoraExpandParams ep{v_in.data(), v_stride, y_ref.data(), out_dim, out_dim, num_tokens,
                           pool.data(), page_elems, segs.data(), static_cast<int32_t>(segs.size())};
  ASSERT_TRUE(lora_expand_paged_ref(ep).ok());
  DevBuf<uint16_t> dvin(to_bf16(v_in));
  PagedLoraExpandBf16Params dep;
  dep.v = dvin.p;
  dep.v_stride = v_stride;
  dep.y = dy.p;
  dep.y_stride = out_dim;
  dep.out_dim = out_dim;
  dep.num_tokens = num_tokens;
  dep.pool = dpool.p;
  dep.page_elems = page_elems;
  dep.segments = dseg.p;
  dep.page_ids = dpages.p;
  dep.num_segments = static_cast<int32_t>(dsegs.size());
  dep.max_rank = max_rank;
  ASSERT_TRUE(launch_lora_expand_paged_bf16(dep, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // Every element: rows outside segments must come back exactly as they were.
  expect_close(from_bf16(dy.host()), y_ref, 2e-2f, 1e-2f, 1e-2, "lora_expand_bf16");
}

TEST(GpuBf16LoraPaged, RaggedSegmentsMixedRanksStraddlingPages) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 1000;
  for (int64_t tokens : {1, 3, 16, 77, 256, 512}) {
    // page_elems not a multiple of in_dim/out_dim: rows straddle pages.
    run_lora_case(tokens, 512, 768, 1000, seed++);
    run_lora_case(tokens, 4096, 1024, 65536 + 37, seed++);
  }
  run_lora_case(64, 300, 200, 97, seed++);  // tiny pages: every row spans several
}

TEST(GpuBf16Launch, BadParamsAreStatusNotCrash) {
  // Runs without a GPU too: validation happens before any CUDA call.
  EXPECT_EQ(launch_rmsnorm_bf16(RmsNormBf16Params{nullptr, nullptr, nullptr, 1, 0, 1e-5f}, nullptr).code(),
            StatusCode::kInvalidArgument);
  AttentionBf16Params a;
  a.num_tokens = 1;
  a.num_q_heads = 4;
  a.num_kv_heads = 3;
  a.head_dim = 64;
  a.scale = 0.125f;
  EXPECT_EQ(launch_attention_bf16(a, nullptr).code(), StatusCode::kInvalidArgument);
  a.num_kv_heads = 2;
  a.head_dim = 512;  // > 256
  EXPECT_EQ(launch_attention_bf16(a, nullptr).code(), StatusCode::kInvalidArgument);
  PagedLoraShrinkBf16Params s;
  s.num_tokens = 4;
  s.num_segments = 1;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(launch_silu_mul_bf16(SiluMulBf16Params{nullptr, nullptr, nullptr, 0, 8}, nullptr).ok());
}

}  // namespace
}  // namespace loraserve::kernels
