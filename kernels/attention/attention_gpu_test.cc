// The bf16 CUDA attention kernel against its CPU reference, run on the
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
#include "tests/gpu/gpu_test_util.h"

namespace loraserve::kernels {
namespace {

using gputest::DevBuf;
using gputest::expect_close;
using gputest::from_bf16;
using gputest::random_vec;
using gputest::rounded;
using gputest::to_bf16;

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

TEST(GpuBf16AttentionLaunch, BadParamsAreStatusNotCrash) {
  // Runs without a GPU too: validation happens before any CUDA call.
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
}

}  // namespace
}  // namespace loraserve::kernels
