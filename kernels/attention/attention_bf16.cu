// CUDA paged KV append and causal GQA attention, bf16 storage, fp32 math:
// the dispatcher. The algorithms live one per file beside it:
// attention_tile_bf16.cu (SIMT tiles), attention_tile_wmma_bf16.cu (tensor
// cores), attention_decode_bf16.cu (isolated tokens); the tile window and
// addressing they share are in attention_bf16_common.cuh.
//
// ---- Design: two kernels, every token written by exactly one -------------
//
// Words: token t is LINKED to t - 1 when both belong to the same sequence
// and positions[t] == positions[t - 1] + 1. A RUN is a maximal stretch of
// linked tokens (a prefill or chunked-prefill chunk as the scheduler lays it
// out). A token linked to neither neighbour is ISOLATED (a decode token, or
// tokens in an order that makes no run). Both kernels evaluate the same
// predicate (`linked` below) on the same device arrays, so they agree on
// which tokens each one owns without any host knowledge.
//
// 1. attention_tile_bf16_kernel: every non-isolated token (FlashAttention-2
//    style tiles, K/V staged in shared memory and reused by a whole tile).
//    Who builds the tiles? token_seq / positions are device arrays and the
//    interface must not change, so the host cannot list tiles without a sync
//    and a copy. Instead the grid covers FIXED WINDOWS of W consecutive
//    token indices; a block loads its window's (seq, pos) (plus one
//    neighbour each side) into shared memory, cuts the window into run
//    pieces and processes each piece as one tile, one after the other
//    (isolated tokens are skipped). No prefix sums, no extra launch, and a
//    run of n tokens costs at most ceil(n / W) + 1 tiles; the price is that a
//    window holding several short runs handles them serially, and that a
//    run cut by a window border may leave a piece of a single token (still
//    correct, it just reuses K/V less).
//
//    grid  = (ceil(T / W), num_kv_heads * splits), block = 128 threads.
//    A block serves one kv head and hpb q heads of its GQA group (all of
//    them when group <= R, else the group is split in `splits` parts).
//    Query rows r = i * hpb + g (token i of the piece, head g), R rows per
//    block at most, so W = R / hpb tokens: the K/V of a key block, loaded
//    once, serves up to R (token, head) rows. Per key block of Bk positions
//    (any page_tokens: every key row finds its own page, so a key block
//    may straddle pages):
//      load K, V rows -> smem (bf16) | S = Q K^T (scaled, causal mask per
//      row) -> smem | one thread per row: online softmax (running max m and
//      sum l in registers, P and the correction factor -> smem) | O = O *
//      corr + P V in registers (fp32).
//    Two versions of this kernel, the same windows, pieces and rows:
//    head_dim % 16 == 0 (every common model) takes attention_tile_wmma_bf16
//    (section 1b: both products on tensor cores, WMMA bf16 m16n16k16 with
//    fp32 accumulators); any other head_dim the SIMT kernel below (plain
//    fp32 FMAs), whose geometry follows.
//    Thread (ty, tx) = (tid / 16, tid % 16) owns rows ty + 8 i and, in S,
//    keys tx + 16 jj, in O, head elements 32 c + 2 tx + {0, 1}.
//    Tile sizes by D = head_dim rounded up to 32 (one template per D):
//      R = clamp(8192 / D, 32, 128) rounded down to 8 (<= 64 fp32
//      accumulators per thread): D 32/64: 128, 96: 80, 128: 64, 160: 48,
//      192: 40, 224/256: 32. Bk = 32, or 16 where 32 would not fit 48 KiB
//      (D = 256). Dynamic smem (no opt-in needed): Q bf16 [R][D], K bf16
//      [Bk][D + 2] (odd word stride: no bank conflicts), V bf16 [Bk][D],
//      S fp32 [R][Bk + 1], a few per-row and per-window ints: 30.7 KiB (D 32)
//      to 46.8 KiB (D 224); 41.4 KiB for D 128, 34.7 KiB for D 256. No
//      spills on sm_80 (120 to 155 registers).
//    Global K/V traffic for a 2048-token prefill: the per-(token, head)
//    kernel reads sum_t (t + 1) rows per q head (2.1 M rows x num_q_heads);
//    the tiles read (k + 1) W rows for window k = 0, 1, ... of a kv head
//    (reads issued; the old kernel's mostly hit L2, but still). Llama-2-7B
//    shape (32 heads, D 128, MHA: R = W = 64): 67.1 M -> 1.08 M rows of 512 B
//    (34.4 GB -> 0.55 GB per layer, 62x). Llama-3-8B shape (32 q / 8 kv
//    heads, group 4, W = 16): 67.1 M -> 1.06 M rows (34.4 GB -> 0.54 GB,
//    63.5x): the GQA group shares every K/V load as well.
//
// 2. attention_bf16_kernel: the isolated tokens (decode), one block of
//    kWarps warps per (token, q head); warp w takes positions w, w + kWarps,
//    ... with an online softmax, lane l holds head elements l + 32 r; the
//    warps' states merge through shared memory. A decode token is a tile of
//    one row per head: in the tile kernel it would keep 1 of R rows busy and
//    walk a long context with one block, while this kernel spreads the
//    context over 4 warps and the heads over blocks. Blocks of non-isolated
//    tokens return at once (T x num_q_heads tiny blocks for a pure prefill:
//    microseconds, against milliseconds of tile work).
//
// Both launch on the same stream. `out` may alias `q` (as for the CPU
// reference): every (token, head) row of q is read only by the block that
// writes that row of out, before it writes it.
#include <cmath>
#include <string>

#include "kernels/attention/attention_bf16_common.cuh"

namespace loraserve::kernels {
namespace attention_detail {

// Kernel arguments for tiles of `rows` (token, head) rows.
TileArgs tile_args(const AttentionBf16Params& p, int rows) {
  TileArgs a;
  a.q = p.q;
  a.out = p.out;
  a.token_seq = p.token_seq;
  a.positions = p.positions;
  a.num_tokens = p.num_tokens;
  a.num_q_heads = static_cast<int32_t>(p.num_q_heads);
  a.group = static_cast<int32_t>(p.num_q_heads / p.num_kv_heads);
  a.head_dim = static_cast<int32_t>(p.head_dim);
  a.splits = (a.group + rows - 1) / rows;
  a.heads_per_block = (a.group + a.splits - 1) / a.splits;
  a.window = rows / a.heads_per_block;
  a.scale_log2 = p.scale * 1.4426950408889634f;
  a.vec8 = cuda::is_aligned16(p.kv.pool) && p.kv.page_stride % 8 == 0 &&
           p.head_dim % 8 == 0;  // then kv_dim, every row and kv head offset are multiples of 8
  a.kv = p.kv;
  return a;
}

dim3 tile_grid(const AttentionBf16Params& p, const TileArgs& a) {
  const int64_t windows = (p.num_tokens + a.window - 1) / a.window;
  return dim3(static_cast<unsigned>(windows), static_cast<unsigned>(p.num_kv_heads * a.splits));
}

}  // namespace attention_detail

namespace {

using attention_detail::kMaxHeadDim;
using attention_detail::page_base;


// One block per token; threads copy its K and V rows into the page.
__global__ void kv_append_bf16_kernel(const uint16_t* __restrict__ k, const uint16_t* __restrict__ v,
                                      const int32_t* __restrict__ token_seq,
                                      const int32_t* __restrict__ positions, PagedKvViewBf16 kv) {
  const int64_t t = blockIdx.x;
  const int32_t seq = token_seq[t];
  const int64_t pos = positions[t];
  uint16_t* page = page_base(kv, seq, pos);
  const int64_t slot = pos % kv.page_tokens;
  uint16_t* k_dst = page + slot * kv.kv_dim;
  uint16_t* v_dst = page + (static_cast<int64_t>(kv.page_tokens) + slot) * kv.kv_dim;
  const uint16_t* k_src = k + t * kv.kv_dim;
  const uint16_t* v_src = v + t * kv.kv_dim;
  for (int i = threadIdx.x; i < kv.kv_dim; i += blockDim.x) {
    k_dst[i] = k_src[i];
    v_dst[i] = v_src[i];
  }
}

Status check_view(const char* op, const PagedKvViewBf16& kv) {
  if (!kv.pool || !kv.block_indptr || !kv.page_ids || kv.page_tokens <= 0 || kv.kv_dim <= 0 ||
      kv.num_layers <= 0 || kv.layer < 0 || kv.layer >= kv.num_layers || kv.num_seqs <= 0 ||
      kv.page_stride < 2 * static_cast<int64_t>(kv.page_tokens) * kv.kv_dim) {
    return invalid_argument(std::string(op) + ": bad KV view");
  }
  return ok_status();
}

}  // namespace

Status launch_kv_append_bf16(const KvAppendBf16Params& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.num_tokens > 0x7fffffffll) return invalid_argument("kv_append_bf16: bad num_tokens");
  if (p.num_tokens == 0) return ok_status();
  if (!p.k || !p.v || !p.token_seq || !p.positions) return invalid_argument("kv_append_bf16: null pointer");
  LS_RETURN_IF_ERROR(check_view("kv_append_bf16", p.kv));
  LS_LAUNCH(kv_append_bf16_kernel, static_cast<unsigned>(p.num_tokens), 128, 0, stream)(
      p.k, p.v, p.token_seq, p.positions, p.kv);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

Status launch_attention_bf16(const AttentionBf16Params& p, cudaStream_t stream) {
  if (p.num_tokens < 0 || p.num_tokens > 0x7fffffffll) return invalid_argument("attention_bf16: bad num_tokens");
  if (p.num_q_heads <= 0 || p.num_kv_heads <= 0 || p.num_q_heads % p.num_kv_heads != 0 ||
      p.num_q_heads > 65535 || p.head_dim <= 0 || p.head_dim > kMaxHeadDim) {
    return invalid_argument("attention_bf16: bad head geometry (head_dim <= 256)");
  }
  if (p.kv.kv_dim != p.num_kv_heads * p.head_dim) {
    return invalid_argument("attention_bf16: kv_dim != num_kv_heads * head_dim");
  }
  if (!(p.scale > 0.0f) || !std::isfinite(p.scale)) return invalid_argument("attention_bf16: bad scale");
  if (p.num_tokens == 0) return ok_status();
  if (!p.q || !p.out || !p.token_seq || !p.positions) return invalid_argument("attention_bf16: null pointer");
  LS_RETURN_IF_ERROR(check_view("attention_bf16", p.kv));
  // Runs (prefill, chunked prefill) in tiles, on tensor cores when head_dim
  // is a multiple of 16 (every common model); then the isolated (decode)
  // tokens.
  if (p.head_dim % 16 == 0) {
    LS_RETURN_IF_ERROR(attention_detail::launch_attention_tile_wmma(p, stream));
  } else {
    LS_RETURN_IF_ERROR(attention_detail::launch_attention_tile_simt(p, stream));
  }
  return attention_detail::launch_attention_decode(p, stream);
}

}  // namespace loraserve::kernels
