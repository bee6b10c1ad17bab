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
#include <utility>
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
// Token order in the batch: sequence after sequence (the scheduler's),
// each sequence's new tokens cut in chunks of 1..max_chunk tokens and the
// chunks shuffled (runs broken up, decode-like singles between them), or
// the whole batch reversed (no two tokens form a run).
enum class AttnOrder { kInOrder, kChunksShuffled, kReversed };

struct AttnCase {
  int32_t page_tokens;
  int64_t nq, nkv, hd;
  std::vector<int32_t> lengths;  // total length of each sequence after this step
  std::vector<int32_t> n_new;    // tokens of each sequence in this step
  AttnOrder order = AttnOrder::kInOrder;
  int32_t max_chunk = 1;         // for kChunksShuffled
  bool in_place = false;         // out = q (allowed, as for attention_ref): a token
                                 // computed twice would read its own output as q
  int64_t stride_pad = 24;       // page stride - 2 * page_tokens * kv_dim (not a multiple
                                 // of 8: K/V rows lose 16-byte alignment, scalar loads)
};

void run_attention_case(const AttnCase& c, uint32_t seed) {
  const int32_t num_layers = 3, layer = 1;
  const int32_t kv_dim = static_cast<int32_t>(c.nkv * c.hd);
  const int64_t stride = 2ll * c.page_tokens * kv_dim + c.stride_pad;  // padded on purpose
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
  if (c.order == AttnOrder::kChunksShuffled) {
    std::vector<std::vector<std::pair<int32_t, int32_t>>> chunks;
    for (int32_t s = 0; s < num_seqs; ++s) {
      for (int32_t p = c.lengths[s] - c.n_new[s]; p < c.lengths[s];) {
        const int32_t n = std::min<int32_t>(c.lengths[s] - p, 1 + static_cast<int32_t>(rng() % c.max_chunk));
        chunks.emplace_back();
        for (int32_t i = 0; i < n; ++i) chunks.back().emplace_back(s, p + i);
        p += n;
      }
    }
    std::shuffle(chunks.begin(), chunks.end(), rng);
    for (const auto& ch : chunks) {
      for (const auto& [s, p] : ch) {
        token_seq.push_back(s);
        positions.push_back(p);
      }
    }
  } else {
    for (int32_t s = 0; s < num_seqs; ++s) {
      for (int32_t p = c.lengths[s] - c.n_new[s]; p < c.lengths[s]; ++p) {
        token_seq.push_back(s);
        positions.push_back(p);
      }
    }
    if (c.order == AttnOrder::kReversed) {
      std::reverse(token_seq.begin(), token_seq.end());
      std::reverse(positions.begin(), positions.end());
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
  uint16_t* out = c.in_place ? dq.p : dout.p;
  AttentionBf16Params dat{dq.p, out, dseq.p, dpos.p, T, c.nq, c.nkv, c.hd, scale, dview};
  ASSERT_TRUE(launch_attention_bf16(dat, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // The whole pool: the new rows in place, nothing else touched (exact, a copy).
  expect_close(from_bf16(dpool.host()), ref_pool, 0.0f, 0.0f, 0.0, "kv_append_bf16 pool");
  expect_close(from_bf16((c.in_place ? dq : dout).host()), want, 1e-2f, 2e-2f, 1e-2,
               c.in_place ? "attention_bf16 (in place)" : "attention_bf16");
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

// The tiled path (runs of consecutive positions of one sequence, in tiles
// of R (token, head) rows per kv head: R = 128 for head_dim <= 64, 80 for
// 96, 64 for 128, 32 for 256; W = R / group tokens per window). Tile
// windows cut runs mid-sequence, span two sequences, start chunks at
// unaligned positions; decode tokens sit between runs; every group size
// from MHA to a group larger than R (split over blocks).
TEST(GpuBf16Attention, TiledPrefillRunsAcrossWindowsSequencesAndGroups) {
  SKIP_WITHOUT_GPU();
  // MHA, 300-token prefill: 64-token windows end mid-sequence.
  run_attention_case({16, 4, 4, 128, {300}, {300}}, 600);
  // group 2, page 5: prefills back to back (64-token windows span 2-3
  // sequences), then a first decode token.
  run_attention_case({5, 8, 4, 64, {70, 45, 33, 1}, {70, 45, 33, 1}}, 610);
  // group 4, head_dim 40: a chunk from position 67, a decode, a prefill, a decode.
  run_attention_case({16, 8, 2, 40, {200, 3, 90, 17}, {133, 1, 90, 1}}, 620);
  // group 8, head_dim 96 (R 80, W 10), page 5: chunk from position 69.
  run_attention_case({5, 16, 2, 96, {130, 20, 57}, {61, 1, 57}}, 630);
  // head_dim 256 (R 32, 16 keys per block), group 2; chunk from 23.
  run_attention_case({16, 4, 2, 256, {100, 40, 7}, {77, 40, 1}}, 640);
  // Llama-3 shape group 4, head_dim 128 (W 16), two chunked prefills.
  run_attention_case({16, 16, 4, 128, {260, 100}, {150, 100}}, 650);
  // head_dim 50 and 33 (odd): the unaligned (scalar) K/V load path.
  run_attention_case({5, 6, 2, 50, {90, 12}, {70, 12}}, 660);
  run_attention_case({16, 2, 1, 33, {45, 3}, {45, 1}}, 670);
  // head_dim 80 (rounded up to 96), group 4.
  run_attention_case({8, 4, 1, 80, {66}, {66}}, 680);
  // Groups larger than the tile: MQA with 32 heads (W 2), 64 heads over
  // head_dim 256 (R 32: the group is split over 2 blocks, W 1).
  run_attention_case({16, 32, 1, 128, {37, 9}, {37, 1}}, 690);
  run_attention_case({16, 64, 1, 256, {20, 5}, {20, 1}}, 700);
  // Runs broken up and shuffled with decode tokens in between, and a
  // reversed batch (every token isolated: all on the per-token kernel).
  run_attention_case({8, 8, 2, 128, {150, 60, 9, 33}, {150, 20, 1, 33}, AttnOrder::kChunksShuffled, 9}, 710);
  run_attention_case({5, 12, 4, 64, {70, 41, 2}, {70, 30, 1}, AttnOrder::kChunksShuffled, 3}, 720);
  run_attention_case({16, 6, 3, 64, {40, 25}, {40, 3}, AttnOrder::kReversed}, 730);
  // In place (out = q): each (token, head) must be computed exactly once.
  // Starts and ends with a 2-token run; the shuffled batch has runs of every length.
  run_attention_case({16, 8, 2, 64, {12, 50, 4, 130, 31}, {2, 50, 1, 97, 2}, AttnOrder::kInOrder, 1, true}, 740);
  run_attention_case({5, 4, 4, 96, {90, 44, 3}, {90, 30, 3}, AttnOrder::kChunksShuffled, 4, true}, 750);
}

// Every tile configuration. head_dim % 16 == 0 runs on tensor cores (WMMA
// tiles of 16 rows x 16 keys / head elements; R = 128 for D = head_dim
// rounded up to 32 <= 64, 80 for 96, 64 for 128, 48 for 160, 32 above);
// other head_dims on the SIMT tiles. The WMMA cases above cover D 64, 96
// (head_dim 80: column tiles past head_dim skipped), 128 and 256; these add
// D 32, 160, 192, 224, head_dim 48 (3 of 4 column tiles), a group of 3
// (strips that end mid-token), K/V rows that are not 16-byte aligned (a page
// stride that is not a multiple of 8: scalar loads), and SIMT tiles of D 96,
// 128 and 224.
TEST(GpuBf16Attention, TiledPrefillEveryTileConfig) {
  SKIP_WITHOUT_GPU();
  // WMMA. head_dim 16 (D 32, R 128, W 64 with group 2): one key tile of
  // head elements, 140-token prefill (5 key blocks, the last one partial).
  run_attention_case({16, 8, 4, 16, {140, 9}, {140, 1}}, 760);
  // head_dim 48, group 3, page 8: a chunk from position 20 and a prefill.
  run_attention_case({8, 6, 2, 48, {95, 30}, {75, 30}}, 770);
  // head_dim 160 (R 48), 192 (R 32, MHA), 224 (R 32, group 3).
  run_attention_case({16, 4, 2, 160, {70, 5}, {70, 1}}, 780);
  run_attention_case({16, 4, 4, 192, {50}, {50}}, 790);
  run_attention_case({16, 3, 1, 224, {45, 20}, {45, 19}}, 800);
  // Unaligned K/V rows: head_dim 128 and 64 with a page stride of 2 page_tokens kv_dim + 3.
  run_attention_case({5, 8, 2, 128, {90, 40}, {90, 40}, AttnOrder::kInOrder, 1, false, 3}, 810);
  run_attention_case({16, 4, 4, 64, {60, 7}, {33, 7}, AttnOrder::kChunksShuffled, 5, true, 3}, 820);
  // SIMT: head_dim 72 (D 96), 120 (D 128), 200 (D 224).
  run_attention_case({16, 4, 1, 72, {60}, {60}}, 830);
  run_attention_case({16, 4, 2, 120, {70, 2}, {70, 1}}, 840);
  run_attention_case({8, 2, 1, 200, {40, 3}, {40, 1}}, 850);
}

// ---- paged LoRA ----

struct HostAdapter {
  int32_t rank;
  int64_t a_offset, bt_offset;
  std::vector<int32_t> pages;  // image order
};

// The layouts the kernels' vector paths depend on, one knob each: aligned
// or odd offsets, page sizes (multiple of 8 and >= the row, or not), x / y /
// v strides and base pointers (16-byte aligned or not). Everything a kernel
// must not read is NaN (pool padding and unused pages, x padding, v outside
// the segments' ranks), so a read past a row, a mask or a rank shows up.
struct LoraCase {
  int64_t num_tokens = 1, in_dim = 4096, out_dim = 4096, page_elems = 32768;
  std::vector<int32_t> ranks;  // per adapter
  bool decode = true;          // token t: its own segment and adapter t; else ragged segments
  bool gaps = false;           // decode: every 5th token has no segment
  bool aligned_offsets = true; // a_offset / bt_offset multiples of 8 (else odd phases)
  int64_t x_pad = 0, y_pad = 0, v_stride = 0;      // strides: dim + pad; v_stride 0: max rank
  int64_t x_shift = 0, y_shift = 0, v_shift = 0;   // base pointers moved by this many elements
};

void run_lora_general(const LoraCase& c, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "tokens " << c.num_tokens << " in " << c.in_dim << " out "
                                    << c.out_dim << " page " << c.page_elems << " seed " << seed);
  std::mt19937 rng(seed);
  const int num_adapters = static_cast<int>(c.ranks.size());
  const int32_t max_adapter_rank = *std::max_element(c.ranks.begin(), c.ranks.end());
  const int64_t x_stride = c.in_dim + c.x_pad, y_stride = c.out_dim + c.y_pad;
  const int64_t v_stride = c.v_stride ? c.v_stride : max_adapter_rank;
  const int64_t pe = c.page_elems;
  std::vector<HostAdapter> adapters(num_adapters);
  std::vector<int64_t> image_elems(num_adapters);
  int32_t total_pages = 0;
  for (int a = 0; a < num_adapters; ++a) {
    HostAdapter& h = adapters[a];
    h.rank = c.ranks[a];
    h.a_offset = c.aligned_offsets ? 8 * (a % 3) : 1 + (a % 7) + 8 * (a % 2);
    h.bt_offset = h.a_offset + h.rank * c.in_dim + (c.aligned_offsets ? 8 * (a % 2) : 3 + a % 5);
    if (c.aligned_offsets) h.bt_offset = (h.bt_offset + 7) / 8 * 8;
    image_elems[a] = h.bt_offset + h.rank * c.out_dim + 5;
    total_pages += static_cast<int32_t>((image_elems[a] + pe - 1) / pe);
  }
  const int32_t num_pages = total_pages + 3;
  std::vector<int32_t> perm(num_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  int32_t next = 0;
  for (int a = 0; a < num_adapters; ++a) {
    const int32_t n = static_cast<int32_t>((image_elems[a] + pe - 1) / pe);
    adapters[a].pages.assign(perm.begin() + next, perm.begin() + next + n);
    next += n;
  }
  // NaN everywhere but the adapters' A and Bt.
  std::vector<float> pool(static_cast<size_t>(num_pages) * pe, NAN);
  std::uniform_real_distribution<float> unif(-1.0f, 1.0f);
  const float w_scale = 4.0f / std::sqrt(static_cast<float>(c.in_dim));
  for (const HostAdapter& h : adapters) {
    auto fill = [&](int64_t off, int64_t n) {
      for (int64_t e = off; e < off + n; ++e) {
        pool[static_cast<size_t>(h.pages[e / pe]) * pe + e % pe] =
            bf16_to_f32(f32_to_bf16(unif(rng) * w_scale));
      }
    };
    fill(h.a_offset, h.rank * c.in_dim);
    fill(h.bt_offset, h.rank * c.out_dim);
  }

  std::vector<PagedLoraSegment> segs;
  std::vector<PagedLoraSegmentDev> dsegs;
  std::vector<int32_t> all_pages;
  auto add_segment = [&](int32_t begin, int32_t end, int a) {
    const HostAdapter& h = adapters[a];
    PagedLoraSegment s;
    s.begin = begin;
    s.end = end;
    s.rank = h.rank;
    s.scale = 0.5f + static_cast<float>(rng() % 100) / 50.0f;
    s.page_ids = h.pages.data();
    s.a_offset = h.a_offset;
    s.bt_offset = h.bt_offset;
    segs.push_back(s);
    PagedLoraSegmentDev d;
    d.begin = begin;
    d.end = end;
    d.rank = h.rank;
    d.scale = s.scale;
    d.page_begin = static_cast<int32_t>(all_pages.size());
    d.num_pages = static_cast<int32_t>(h.pages.size());
    d.a_offset = h.a_offset;
    d.bt_offset = h.bt_offset;
    dsegs.push_back(d);
    all_pages.insert(all_pages.end(), h.pages.begin(), h.pages.end());
  };
  if (c.decode) {
    ASSERT_EQ(num_adapters, c.num_tokens);
    for (int32_t t = 0; t < c.num_tokens; ++t) {
      if (!c.gaps || t % 5 != 3) add_segment(t, t + 1, t);
    }
  } else {
    int32_t t = 0;
    while (t < c.num_tokens) {
      const int32_t len = 1 + static_cast<int32_t>(rng() % std::max<int64_t>(1, c.num_tokens / 4));
      const int32_t end = static_cast<int32_t>(std::min<int64_t>(c.num_tokens, t + len));
      if (rng() % 5 != 0) add_segment(t, end, static_cast<int>(rng() % num_adapters));
      t = end;
    }
    // A draw of nothing but gaps (likely for one token) would check nothing.
    if (segs.empty()) add_segment(0, static_cast<int32_t>(c.num_tokens), 0);
  }
  ASSERT_FALSE(segs.empty());
  int32_t max_rank = 0;
  for (const auto& s : segs) max_rank = std::max(max_rank, s.rank);

  // x: NaN outside the rows' first in_dim columns; y: random everywhere.
  std::vector<float> x(c.x_shift + c.num_tokens * x_stride, NAN);
  {
    auto vals = rounded(random_vec(c.num_tokens * c.in_dim, seed + 2, -1.0f, 1.0f));
    for (int64_t t = 0; t < c.num_tokens; ++t) {
      std::copy_n(vals.begin() + t * c.in_dim, c.in_dim, x.begin() + c.x_shift + t * x_stride);
    }
  }
  const auto y0 = rounded(random_vec(c.y_shift + c.num_tokens * y_stride, seed + 3, -1.0f, 1.0f));

  // Shrink.
  std::vector<float> v_ref(c.v_shift + c.num_tokens * v_stride, NAN);
  PagedLoraShrinkParams sp{x.data() + c.x_shift, x_stride, v_ref.data() + c.v_shift, v_stride,
                           c.in_dim, c.num_tokens, pool.data(), pe, segs.data(),
                           static_cast<int32_t>(segs.size())};
  ASSERT_TRUE(lora_shrink_paged_ref(sp).ok());
  DevBuf<uint16_t> dpool(to_bf16(pool)), dx(to_bf16(x)), dy(to_bf16(y0));
  DevBuf<uint16_t> dv(v_ref.size());  // poisoned: 0xffff
  DevBuf<PagedLoraSegmentDev> dseg(dsegs);
  DevBuf<int32_t> dpages(all_pages);
  PagedLoraShrinkBf16Params dsp;
  dsp.x = dx.p + c.x_shift;
  dsp.x_stride = x_stride;
  dsp.v = dv.p + c.v_shift;
  dsp.v_stride = v_stride;
  dsp.in_dim = c.in_dim;
  dsp.num_tokens = c.num_tokens;
  dsp.pool = dpool.p;
  dsp.page_elems = pe;
  dsp.segments = dseg.p;
  dsp.page_ids = dpages.p;
  dsp.num_segments = static_cast<int32_t>(dsegs.size());
  dsp.max_rank = max_rank;
  ASSERT_TRUE(launch_lora_shrink_paged_bf16(dsp, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto v_bits = dv.host();
  std::vector<bool> defined(v_bits.size(), false);
  std::vector<float> got_v, want_v;
  for (const auto& s : segs) {
    for (int32_t t = s.begin; t < s.end; ++t) {
      for (int32_t j = 0; j < s.rank; ++j) {
        const size_t i = c.v_shift + t * v_stride + j;
        defined[i] = true;
        got_v.push_back(bf16_to_f32(v_bits[i]));
        want_v.push_back(v_ref[i]);
      }
    }
  }
  expect_close(got_v, want_v, 2e-2f, 1e-2f, 1e-2, "lora_shrink_bf16 (general)");
  size_t touched = 0;
  for (size_t i = 0; i < v_bits.size(); ++i) touched += !defined[i] && v_bits[i] != 0xffff;
  EXPECT_EQ(touched, 0u) << "shrink wrote v outside the segments' ranks";

  // Expand from the device's v as it is (NaN wherever no segment defines it).
  std::vector<float> v_in = from_bf16(v_bits);
  std::vector<float> y_ref = y0;
  PagedLoraExpandParams ep{v_in.data() + c.v_shift, v_stride, y_ref.data() + c.y_shift, y_stride,
                           c.out_dim, c.num_tokens, pool.data(), pe, segs.data(),
                           static_cast<int32_t>(segs.size())};
  ASSERT_TRUE(lora_expand_paged_ref(ep).ok());
  PagedLoraExpandBf16Params dep;
  dep.v = dv.p + c.v_shift;
  dep.v_stride = v_stride;
  dep.y = dy.p + c.y_shift;
  dep.y_stride = y_stride;
  dep.out_dim = c.out_dim;
  dep.num_tokens = c.num_tokens;
  dep.pool = dpool.p;
  dep.page_elems = pe;
  dep.segments = dseg.p;
  dep.page_ids = dpages.p;
  dep.num_segments = static_cast<int32_t>(dsegs.size());
  dep.max_rank = max_rank;
  ASSERT_TRUE(launch_lora_expand_paged_bf16(dep, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // The whole buffer: padding columns, rows without a segment and the
  // elements before the shifted base must come back unchanged.
  expect_close(from_bf16(dy.host()), y_ref, 2e-2f, 1e-2f, 1e-2, "lora_expand_bf16 (general)");
}

// Ragged segments with gaps over six adapters of ranks 8..128 at odd
// offsets; page sizes that rows straddle (every row spans several at 97).
TEST(GpuBf16LoraPaged, RaggedSegmentsMixedRanksStraddlingPages) {
  SKIP_WITHOUT_GPU();
  const std::vector<int32_t> rank_choices = {8, 16, 24, 32, 64, 128};
  uint32_t seed = 1000;
  auto run = [&](int64_t tokens, int64_t in_dim, int64_t out_dim, int64_t page_elems) {
    LoraCase c;
    c.num_tokens = tokens;
    c.in_dim = in_dim;
    c.out_dim = out_dim;
    c.page_elems = page_elems;
    for (size_t a = 0; a < rank_choices.size(); ++a) {
      c.ranks.push_back(rank_choices[(a + seed) % rank_choices.size()]);
    }
    c.decode = false;
    c.aligned_offsets = false;
    c.v_stride = 128;
    run_lora_general(c, seed++);
  };
  for (int64_t tokens : {1, 3, 16, 77, 256, 512}) {
    run(tokens, 512, 768, 1000);
    run(tokens, 4096, 1024, 65536 + 37);
  }
  run(64, 300, 200, 97);
}

// Ranks cycling through `choices`, shuffled, one per adapter.
std::vector<int32_t> mixed_ranks(int n, const std::vector<int32_t>& choices, uint32_t seed) {
  std::vector<int32_t> r(n);
  for (int i = 0; i < n; ++i) r[i] = choices[i % choices.size()];
  std::mt19937 rng(seed);
  std::shuffle(r.begin(), r.end(), rng);
  return r;
}

// The benchmark's decode shapes: every token its own segment and adapter,
// hidden 4096, ranks 8..64 mixed, aligned offsets (the vector path, phase 0).
TEST(GpuBf16LoraPaged, DecodeShapesEachTokenItsOwnAdapter) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 2000;
  const std::vector<int32_t> r4 = {8, 16, 32, 64};
  LoraCase c;
  c.ranks = {16};  // batch 1: one row per shrink block
  run_lora_general(c, seed++);
  c.num_tokens = 5;
  c.ranks = {8, 16, 32, 64, 8};
  run_lora_general(c, seed++);
  // Rows straddle pages (at multiples of 8), every 5th token without adapter.
  c.num_tokens = 64;
  c.ranks = mixed_ranks(64, r4, seed);
  c.page_elems = 4096 * 5 + 8;
  c.gaps = true;
  run_lora_general(c, seed++);
  c.num_tokens = 256;
  c.out_dim = 1024;
  c.ranks = mixed_ranks(256, r4, seed);
  c.page_elems = 65536;
  c.gaps = false;
  run_lora_general(c, seed++);
}

// Odd offsets (every phase), strides and base pointers; pages that are a
// multiple of 8 and longer than a row (vector path with a phase), not a
// multiple of 8 (generic path), shorter than a row (generic path, vector
// loads where aligned). Ranks up to 128.
TEST(GpuBf16LoraPaged, DecodeMisalignedOffsetsStridesAndPages) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 3000;
  const std::vector<int32_t> r5 = {8, 16, 32, 64, 128};
  LoraCase c;
  c.num_tokens = 33;
  c.out_dim = 1024;
  c.ranks = mixed_ranks(33, r5, seed);
  c.aligned_offsets = false;
  c.page_elems = 8200;
  run_lora_general(c, seed++);
  // Misaligned activations: x, y, v strides and bases.
  c.x_pad = 3;
  c.y_pad = 5;
  c.v_stride = 131;
  c.x_shift = 1;
  c.y_shift = 3;
  c.v_shift = 1;
  c.gaps = true;
  run_lora_general(c, seed++);
  // Padded but aligned activations, aligned offsets.
  c.aligned_offsets = true;
  c.x_pad = 8;
  c.y_pad = 16;
  c.v_stride = 136;
  c.x_shift = 8;
  c.y_shift = 24;
  c.v_shift = 0;
  run_lora_general(c, seed++);
  // Generic path: page size not a multiple of 8; then shorter than a row.
  c.page_elems = 8197;
  run_lora_general(c, seed++);
  c.num_tokens = 9;
  c.ranks = mixed_ranks(9, r5, seed);
  c.page_elems = 1000;
  run_lora_general(c, seed++);
  c.aligned_offsets = false;
  run_lora_general(c, seed++);
}

// Long segments (several tokens per block share the weight loads) mixed with
// short ones and gaps; odd dims; both weight paths; misaligned activations.
TEST(GpuBf16LoraPaged, PrefillTilesOddDimsAndStrides) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 4000;
  LoraCase c;
  c.decode = false;
  c.ranks = {8, 64, 16, 128, 24, 32};
  c.num_tokens = 301;
  c.in_dim = 512;
  c.out_dim = 768;
  c.page_elems = 1024;
  c.aligned_offsets = false;
  c.x_pad = 1;
  c.y_shift = 1;
  c.v_stride = 129;
  run_lora_general(c, seed++);
  c.in_dim = 300;  // not a multiple of 8: generic path
  c.out_dim = 203;
  c.page_elems = 256;
  c.x_pad = 0;
  c.x_shift = 5;
  c.y_shift = 0;
  c.y_pad = 3;
  run_lora_general(c, seed++);
  c.num_tokens = 64;
  c.in_dim = 1024;
  c.out_dim = 512;
  c.page_elems = 4096;
  c.aligned_offsets = true;
  c.x_shift = 0;
  c.y_pad = 0;
  c.v_stride = 0;
  run_lora_general(c, seed++);
}

// Ranks beyond expand's shared-memory chunk of rows (256) and beyond a
// shrink block's rows, up to 520.
TEST(GpuBf16LoraPaged, RanksBeyondSharedMemoryChunk) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 5000;
  LoraCase c;
  c.num_tokens = 3;
  c.in_dim = 256;
  c.out_dim = 200;
  c.page_elems = 2048;
  c.ranks = {300, 520, 8};
  run_lora_general(c, seed++);
  c.aligned_offsets = false;
  c.page_elems = 999;
  run_lora_general(c, seed++);
  c.decode = false;
  c.num_tokens = 40;
  c.page_elems = 4096;
  run_lora_general(c, seed++);
}

// Runs without a GPU too: every rejection happens before any CUDA call.
TEST(GpuBf16LoraPaged, BadParamsAreInvalidArgument) {
  static uint16_t fake[64];  // never dereferenced: the launches are refused
  static PagedLoraSegmentDev fake_seg;
  static int32_t fake_page;
  auto shrink = [&] {
    PagedLoraShrinkBf16Params p;
    p.x = fake;
    p.x_stride = 4096;
    p.v = fake;
    p.v_stride = 64;
    p.in_dim = 4096;
    p.num_tokens = 4;
    p.pool = fake;
    p.page_elems = 65536;
    p.segments = &fake_seg;
    p.page_ids = &fake_page;
    p.num_segments = 1;
    p.max_rank = 64;
    return p;
  };
  auto expand = [&] {
    PagedLoraExpandBf16Params p;
    p.v = fake;
    p.v_stride = 64;
    p.y = fake;
    p.y_stride = 4096;
    p.out_dim = 4096;
    p.num_tokens = 4;
    p.pool = fake;
    p.page_elems = 65536;
    p.segments = &fake_seg;
    p.page_ids = &fake_page;
    p.num_segments = 1;
    p.max_rank = 64;
    return p;
  };
  const auto bad = StatusCode::kInvalidArgument;
  auto s = shrink();
  s.max_rank = 0;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.max_rank = 65;  // > v_stride
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.v_stride = 9000;
  s.max_rank = 8193;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.x_stride = 4095;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.page_elems = 0;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.page_ids = nullptr;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.num_tokens = -1;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.num_tokens = 0;  // nothing to do
  EXPECT_TRUE(launch_lora_shrink_paged_bf16(s, nullptr).ok());
  auto e = expand();
  e.out_dim = 0;
  EXPECT_EQ(launch_lora_expand_paged_bf16(e, nullptr).code(), bad);
  e = expand();
  e.y_stride = 100;
  EXPECT_EQ(launch_lora_expand_paged_bf16(e, nullptr).code(), bad);
  e = expand();
  e.out_dim = e.y_stride = int64_t{1} << 40;  // more column blocks than a grid holds
  EXPECT_EQ(launch_lora_expand_paged_bf16(e, nullptr).code(), bad);
  e = expand();
  e.pool = nullptr;
  EXPECT_EQ(launch_lora_expand_paged_bf16(e, nullptr).code(), bad);
  e = expand();
  e.max_rank = 128;  // > v_stride
  EXPECT_EQ(launch_lora_expand_paged_bf16(e, nullptr).code(), bad);
  e = expand();
  e.num_segments = 0;  // nothing to do
  EXPECT_TRUE(launch_lora_expand_paged_bf16(e, nullptr).ok());
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
