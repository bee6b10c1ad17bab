// CUDA paged KV append and causal GQA attention, bf16 storage, fp32 math.
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
#include <mma.h>

#include <cmath>

#include "common/cuda_check.h"
#include "kernels/attention/attention.h"
#include "kernels/cuda_util.cuh"

namespace loraserve::kernels {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxHeadDim = 256;
constexpr int kMaxR = kMaxHeadDim / 32;

__device__ __forceinline__ uint16_t* page_base(const PagedKvViewBf16& kv, int32_t seq, int64_t pos) {
  const int64_t row = kv.block_indptr[seq] + pos / kv.page_tokens;
  return kv.pool + static_cast<int64_t>(kv.page_ids[row * kv.num_layers + kv.layer]) * kv.page_stride;
}

// Token b follows token a in one run (see the design note). The one
// definition both kernels use to split the batch between them.
__device__ __forceinline__ bool linked(int32_t seq_a, int32_t pos_a, int32_t seq_b, int32_t pos_b) {
  return seq_a == seq_b && pos_b == pos_a + 1;
}

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

// ---- 2. isolated tokens: one block per (token, q head) ---------------------

__global__ void __launch_bounds__(kWarps * 32)
attention_bf16_kernel(const uint16_t* q, uint16_t* out, const int32_t* __restrict__ token_seq,
                      const int32_t* __restrict__ positions, int64_t num_tokens,
                      int32_t num_q_heads, int32_t group, int32_t head_dim, float scale,
                      PagedKvViewBf16 kv) {
  __shared__ float s_m[kWarps];
  __shared__ float s_l[kWarps];
  __shared__ float s_acc[kWarps][kMaxHeadDim];

  const int64_t t = blockIdx.x;
  const int32_t seq = token_seq[t];
  const int32_t last = positions[t];
  // Part of a run: the tile kernel owns it.
  if ((t > 0 && linked(token_seq[t - 1], positions[t - 1], seq, last)) ||
      (t + 1 < num_tokens && linked(seq, last, token_seq[t + 1], positions[t + 1]))) {
    return;
  }
  const int32_t h = blockIdx.y;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t q_off = (t * num_q_heads + h) * head_dim;
  const int64_t kv_off = static_cast<int64_t>(h / group) * head_dim;

  float qr[kMaxR];
  float acc[kMaxR];
#pragma unroll
  for (int r = 0; r < kMaxR; ++r) {
    const int d = lane + 32 * r;
    qr[r] = d < head_dim ? cuda::ld_bf16(q + q_off + d) * scale : 0.0f;
    acc[r] = 0.0f;
  }
  float m = -INFINITY;
  float l = 0.0f;
  for (int32_t j = warp; j <= last; j += kWarps) {
    const uint16_t* page = page_base(kv, seq, j);
    const int64_t slot = j % kv.page_tokens;
    const uint16_t* krow = page + slot * kv.kv_dim + kv_off;
    const uint16_t* vrow = page + (static_cast<int64_t>(kv.page_tokens) + slot) * kv.kv_dim + kv_off;
    float s = 0.0f;
#pragma unroll
    for (int r = 0; r < kMaxR; ++r) {
      const int d = lane + 32 * r;
      if (d < head_dim) s += qr[r] * cuda::ld_bf16(krow + d);
    }
    s = cuda::warp_sum(s);
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);  // m = -inf the first time: 0
    const float p = expf(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int r = 0; r < kMaxR; ++r) {
      const int d = lane + 32 * r;
      if (d < head_dim) acc[r] = acc[r] * corr + p * cuda::ld_bf16(vrow + d);
    }
    m = m_new;
  }
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
#pragma unroll
  for (int r = 0; r < kMaxR; ++r) {
    const int d = lane + 32 * r;
    if (d < head_dim) s_acc[warp][d] = acc[r];
  }
  __syncthreads();
  // Warp 0 always saw position 0, so the global max is finite.
  float gm = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) gm = fmaxf(gm, s_m[w]);
  float f[kWarps];
  float denom = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    f[w] = s_m[w] == -INFINITY ? 0.0f : expf(s_m[w] - gm);
    denom += s_l[w] * f[w];
  }
  const float inv = 1.0f / denom;
  for (int d = threadIdx.x; d < head_dim; d += kWarps * 32) {
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) o += s_acc[w][d] * f[w];
    cuda::st_bf16(out + q_off + d, o * inv);
  }
}

// ---- 1. runs: tiles of consecutive tokens x the GQA group's heads ----------

constexpr int kTileThreads = 128;  // 8 row groups (ty) x 16 columns (tx)
constexpr size_t kSmemLimit = 48 * 1024;

constexpr size_t align16(size_t b) { return (b + 15) / 16 * 16; }

// Tile geometry for head_dim rounded up to D (a multiple of 32, <= 256).
template <int D>
struct TileCfg {
  static_assert(D % 32 == 0 && D >= 32 && D <= kMaxHeadDim, "D: a multiple of 32 in [32, 256]");
  // Query rows per block: <= 64 fp32 accumulators per thread, a multiple of 8.
  static constexpr int kRows = (8192 / D > 128 ? 128 : (8192 / D < 32 ? 32 : 8192 / D)) / 8 * 8;
  static constexpr int kKStride = D + 2;  // bf16 per K row in smem: an odd number of words
  // Shared memory carve-up for `keys` keys per block: byte offsets.
  static constexpr size_t q_off() { return 0; }                       // Q bf16 [R][D]
  static constexpr size_t k_off() { return q_off() + align16(2ull * kRows * D); }
  static constexpr size_t v_off(int keys) { return k_off() + align16(2ull * keys * kKStride); }
  static constexpr size_t s_off(int keys) { return v_off(keys) + align16(2ull * keys * D); }
  static constexpr size_t corr_off(int keys) { return s_off(keys) + align16(4ull * kRows * (keys + 1)); }
  static constexpr size_t rowpos_off(int keys) { return corr_off(keys) + align16(4ull * kRows); }
  static constexpr size_t wseq_off(int keys) { return rowpos_off(keys) + align16(4ull * kRows); }
  static constexpr size_t wpos_off(int keys) { return wseq_off(keys) + align16(4ull * (kRows + 2)); }
  static constexpr size_t bytes(int keys) { return wpos_off(keys) + align16(4ull * (kRows + 2)); }
  static constexpr int kKeys = bytes(32) <= kSmemLimit ? 32 : 16;  // Bk
  static constexpr int kSStride = kKeys + 1;
  static constexpr size_t kSmemBytes = bytes(kKeys);
  static_assert(kSmemBytes <= kSmemLimit, "tile does not fit 48 KiB of shared memory");
  static constexpr size_t kVOff = v_off(kKeys), kSOff = s_off(kKeys), kCorrOff = corr_off(kKeys),
                          kRowPosOff = rowpos_off(kKeys), kWSeqOff = wseq_off(kKeys),
                          kWPosOff = wpos_off(kKeys), kKOff = k_off();
  static constexpr int kRowIters = kRows / 8;  // rows per thread
  static constexpr int kKeyIters = kKeys / 16; // keys per thread in S
  static constexpr int kColPairs = D / 32;     // column pairs per thread in O
};

struct TileArgs {
  const uint16_t* q;
  uint16_t* out;
  const int32_t* token_seq;
  const int32_t* positions;
  int64_t num_tokens;
  int32_t num_q_heads;
  int32_t group;            // q heads per kv head
  int32_t head_dim;
  int32_t heads_per_block;  // hpb
  int32_t splits;           // blocks per GQA group (grid.y = num_kv_heads * splits)
  int32_t window;           // W = rows / hpb tokens
  float scale_log2;         // scale * log2(e): softmax in exp2
  int32_t vec8;             // K/V rows are 16-byte aligned: 8-element loads
  PagedKvViewBf16 kv;
};

// Two bf16 from 4-byte aligned memory, as floats.
__device__ __forceinline__ float2 ld_bf16x2(const uint16_t* p) {
  const uint32_t w = *reinterpret_cast<const uint32_t*>(p);
  return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}

// A tile block's window of token indices [w0, w1) with one neighbour each
// side in shared memory, cut into pieces: maximal runs of linked tokens
// (see `linked`). Both tile kernels walk the same pieces with uniform
// control flow; isolated tokens are the per-token kernel's.
struct TileWindow {
  int64_t w0, w1;
  int32_t* seq;  // [W + 2]: tokens w0 - 1 .. w1 (seq -1 outside the batch)
  int32_t* pos;

  // Loads the window; contains __syncthreads (call from every thread).
  __device__ void load(const TileArgs& a, int32_t* s_seq, int32_t* s_pos) {
    seq = s_seq;
    pos = s_pos;
    w0 = static_cast<int64_t>(blockIdx.x) * a.window;
    w1 = min(a.num_tokens, w0 + a.window);
    for (int64_t i = threadIdx.x; i < w1 - w0 + 2; i += kTileThreads) {
      const int64_t t = w0 - 1 + i;
      const bool in = t >= 0 && t < a.num_tokens;
      seq[i] = in ? a.token_seq[t] : -1;
      pos[i] = in ? a.positions[t] : 0;
    }
    __syncthreads();
  }
  // Is batch token t linked to t - 1?
  __device__ bool link(int64_t t) const {
    const int64_t i = t - w0 + 1;
    return linked(seq[i - 1], pos[i - 1], seq[i], pos[i]);
  }
  // The piece starting at t0 ends before the returned index; `isolated`
  // when it is a lone token linked to neither neighbour.
  __device__ int64_t piece_end(int64_t t0, bool* isolated) const {
    int64_t t1 = t0 + 1;
    while (t1 < w1 && link(t1)) ++t1;
    *isolated = t1 == t0 + 1 && !link(t0) && !link(t0 + 1);
    return t1;
  }
  __device__ int32_t seq_of(int64_t t) const { return seq[t - w0 + 1]; }
  __device__ int32_t pos_of(int64_t t) const { return pos[t - w0 + 1]; }
};

template <int D>
__global__ void __launch_bounds__(kTileThreads) attention_tile_bf16_kernel(TileArgs a) {
  using C = TileCfg<D>;
  constexpr int BK = C::kKeys;
  constexpr int KS = C::kKStride;
  constexpr int SS = C::kSStride;
  LS_DYNAMIC_SHARED(uint4, smem_raw);
  char* const smem = reinterpret_cast<char*>(smem_raw);
  uint16_t* s_q = reinterpret_cast<uint16_t*>(smem);                  // [R][D]
  uint16_t* s_k = reinterpret_cast<uint16_t*>(smem + C::kKOff);       // [BK][KS]
  uint16_t* s_v = reinterpret_cast<uint16_t*>(smem + C::kVOff);       // [BK][D]
  float* s_s = reinterpret_cast<float*>(smem + C::kSOff);             // [R][SS]
  float* s_corr = reinterpret_cast<float*>(smem + C::kCorrOff);       // [R]
  int32_t* s_rowpos = reinterpret_cast<int32_t*>(smem + C::kRowPosOff);  // [R]
  int32_t* s_wseq = reinterpret_cast<int32_t*>(smem + C::kWSeqOff);   // [W + 2]: tokens w0 - 1 .. w1
  int32_t* s_wpos = reinterpret_cast<int32_t*>(smem + C::kWPosOff);   // [W + 2]

  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int ty = tid / 16;
  const int tx = tid % 16;
  const int32_t hd = a.head_dim;
  const int32_t hd2 = (hd + 1) & ~1;  // S runs over element pairs; Q and K are zero past hd
  const int32_t kv_head = blockIdx.y / a.splits;
  const int32_t h0 = kv_head * a.group + (blockIdx.y % a.splits) * a.heads_per_block;
  const int32_t nh = min(a.heads_per_block, kv_head * a.group + a.group - h0);
  const int64_t kv_off = static_cast<int64_t>(kv_head) * hd;
  const PagedKvViewBf16& kv = a.kv;

  TileWindow win;
  win.load(a, s_wseq, s_wpos);

  // Every thread walks the same pieces (uniform control flow).
  for (int64_t t0 = win.w0; t0 < win.w1;) {
    bool isolated;
    const int64_t t1 = win.piece_end(t0, &isolated);
    if (isolated) {  // the per-token kernel's
      t0 = t1;
      continue;
    }
    const int32_t ntok = static_cast<int32_t>(t1 - t0);
    const int32_t nrows = ntok * nh;
    const int32_t seq = win.seq_of(t0);
    const int32_t p0 = win.pos_of(t0);
    const int32_t plast = p0 + ntok - 1;

    // Q rows (zero past head_dim) and each row's position.
    for (int r = warp; r < nrows; r += kTileThreads / 32) {
      const int64_t tok = t0 + r / nh;
      const uint16_t* src = a.q + (tok * a.num_q_heads + h0 + r % nh) * hd;
      for (int d = lane; d < D; d += 32) s_q[r * D + d] = d < hd ? src[d] : uint16_t{0};
    }
    if (tid < nrows) s_rowpos[tid] = p0 + tid / nh;

    // This thread's rows ty + 8 i, i < ni (rows past nrows are skipped).
    const int ni = ty < nrows ? min(C::kRowIters, (nrows - ty + 7) / 8) : 0;
    float acc[C::kRowIters][C::kColPairs][2];
#pragma unroll
    for (int i = 0; i < C::kRowIters; ++i) {
#pragma unroll
      for (int c = 0; c < C::kColPairs; ++c) acc[i][c][0] = acc[i][c][1] = 0.0f;
    }
    float m = -INFINITY;  // softmax state of row tid (tid < nrows)
    float l = 0.0f;
    const int64_t blk0 = kv.block_indptr[seq];

    for (int32_t kb = 0; kb <= plast; kb += BK) {
      const int nk = min(BK, plast - kb + 1);
      // K and V rows of positions kb .. kb + nk - 1, each from its own page.
      for (int j = warp; j < nk; j += kTileThreads / 32) {
        const int32_t pos = kb + j;
        const uint16_t* page =
            kv.pool + static_cast<int64_t>(kv.page_ids[(blk0 + pos / kv.page_tokens) * kv.num_layers +
                                                       kv.layer]) *
                          kv.page_stride;
        const int64_t slot = pos % kv.page_tokens;
        const uint16_t* krow = page + slot * kv.kv_dim + kv_off;
        const uint16_t* vrow = page + (static_cast<int64_t>(kv.page_tokens) + slot) * kv.kv_dim + kv_off;
        uint16_t* kdst = s_k + j * KS;
        uint16_t* vdst = s_v + j * D;
        if (a.vec8) {
          for (int c = lane; c < hd / 8; c += 32) {
            const uint4 kw = cuda::ld_bf16x8(krow + 8 * c);
            const uint4 vw = cuda::ld_bf16x8(vrow + 8 * c);
            uint32_t* kd = reinterpret_cast<uint32_t*>(kdst + 8 * c);  // KS even: 4-byte aligned
            kd[0] = kw.x;
            kd[1] = kw.y;
            kd[2] = kw.z;
            kd[3] = kw.w;
            cuda::st_bf16x8(vdst + 8 * c, vw);
          }
          for (int d = hd + lane; d < D; d += 32) kdst[d] = vdst[d] = 0;
        } else {
          for (int d = lane; d < D; d += 32) {
            kdst[d] = d < hd ? krow[d] : uint16_t{0};
            vdst[d] = d < hd ? vrow[d] : uint16_t{0};
          }
        }
      }
      __syncthreads();

      // S = Q K^T for rows ty + 8 i and keys tx + 16 jj; masked past each row's position.
      if (ni > 0) {
        float s[C::kRowIters][C::kKeyIters];
#pragma unroll
        for (int i = 0; i < C::kRowIters; ++i) {
#pragma unroll
          for (int jj = 0; jj < C::kKeyIters; ++jj) s[i][jj] = 0.0f;
        }
        for (int d = 0; d < hd2; d += 2) {
          float2 kf[C::kKeyIters];
#pragma unroll
          for (int jj = 0; jj < C::kKeyIters; ++jj) kf[jj] = ld_bf16x2(s_k + (tx + 16 * jj) * KS + d);
#pragma unroll
          for (int i = 0; i < C::kRowIters; ++i) {
            if (i < ni) {
              const float2 qf = ld_bf16x2(s_q + (ty + 8 * i) * D + d);
#pragma unroll
              for (int jj = 0; jj < C::kKeyIters; ++jj) {
                s[i][jj] = fmaf(qf.x, kf[jj].x, s[i][jj]);
                s[i][jj] = fmaf(qf.y, kf[jj].y, s[i][jj]);
              }
            }
          }
        }
#pragma unroll
        for (int i = 0; i < C::kRowIters; ++i) {
          const int r = ty + 8 * i;
          if (i < ni) {
            const int32_t rp = s_rowpos[r];
#pragma unroll
            for (int jj = 0; jj < C::kKeyIters; ++jj) {
              const int j = tx + 16 * jj;
              if (j < nk) s_s[r * SS + j] = kb + j <= rp ? s[i][jj] * a.scale_log2 : -INFINITY;
            }
          }
        }
      }
      __syncthreads();

      // Online softmax, one thread per row. Key 0 is in the first block and
      // every row sees it, so m is finite from then on and masked keys give 0.
      if (tid < nrows) {
        float* srow = s_s + tid * SS;
        float mx = m;
        for (int j = 0; j < nk; ++j) mx = fmaxf(mx, srow[j]);
        const float corr = exp2f(m - mx);  // m = -inf the first time: 0
        float sum = 0.0f;
        for (int j = 0; j < nk; ++j) {
          const float p = exp2f(srow[j] - mx);
          srow[j] = p;
          sum += p;
        }
        l = l * corr + sum;
        m = mx;
        s_corr[tid] = corr;
      }
      __syncthreads();

      // O = O * corr + P V for rows ty + 8 i, elements 32 c + 2 tx + {0, 1}.
      if (ni > 0) {
#pragma unroll
        for (int i = 0; i < C::kRowIters; ++i) {
          if (i < ni) {
            const float corr = s_corr[ty + 8 * i];
#pragma unroll
            for (int c = 0; c < C::kColPairs; ++c) {
              acc[i][c][0] *= corr;
              acc[i][c][1] *= corr;
            }
          }
        }
        for (int j = 0; j < nk; ++j) {
          float2 vf[C::kColPairs];
#pragma unroll
          for (int c = 0; c < C::kColPairs; ++c) vf[c] = ld_bf16x2(s_v + j * D + 32 * c + 2 * tx);
#pragma unroll
          for (int i = 0; i < C::kRowIters; ++i) {
            if (i < ni) {
              const float p = s_s[(ty + 8 * i) * SS + j];
#pragma unroll
              for (int c = 0; c < C::kColPairs; ++c) {
                acc[i][c][0] = fmaf(p, vf[c].x, acc[i][c][0]);
                acc[i][c][1] = fmaf(p, vf[c].y, acc[i][c][1]);
              }
            }
          }
        }
      }
      __syncthreads();  // K, V, S are rewritten by the next key block
    }

    if (tid < nrows) s_corr[tid] = 1.0f / l;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < C::kRowIters; ++i) {
      if (i < ni) {
        const int r = ty + 8 * i;
        const float inv = s_corr[r];
        const int64_t tok = t0 + r / nh;
        uint16_t* dst = a.out + (tok * a.num_q_heads + h0 + r % nh) * hd;
#pragma unroll
        for (int c = 0; c < C::kColPairs; ++c) {
          const int d = 32 * c + 2 * tx;
          if (d < hd) cuda::st_bf16(dst + d, acc[i][c][0] * inv);
          if (d + 1 < hd) cuda::st_bf16(dst + d + 1, acc[i][c][1] * inv);
        }
      }
    }
    __syncthreads();  // s_q, s_rowpos, s_corr are rewritten by the next piece
    t0 = t1;
  }
}

// ---- 1b. runs on tensor cores: the same tiles, both products with WMMA -----
//
// head_dim % 16 == 0 (launch_tiles). Same window / piece / row layout as
// above; only the math moves to bf16 m16n16k16 WMMA with fp32 accumulators.
// Tiles of 16 x 16 (a "strip" is 16 query rows), 4 warps, R = 16 * strips.
//   S strip x key tile: Q (row_major, smem) x K^T (K rows in smem read as a
//     col_major matrix_b), k over head_dim in steps of 16 -> S fp32 in smem.
//   One thread per row: mask, scale, online softmax on S in fp32; P = exp2
//     rounded to bf16 -> smem, and l sums exactly those rounded P, so the
//     weights that multiply V are the ones that normalise the row.
//   O strip x 16 head elements: accumulator fragments kept in registers for
//     the whole piece (<= 8 per warp), O += P (row_major) x V (row_major).
//     The fragment layout is opaque, so the per-row correction factor goes
//     through a per-warp 16 x 16 fp32 scratch (store, scale rows, load), and
//     only when some row of the strip changed its max (corr != 1).
// S and O tiles are dealt round-robin over the warps (tile t to warp t % 4),
// so a piece of a few rows still spreads its head elements over every warp.
// Rows past the piece (up to the strip) and keys past the block (up to the
// key tile) are computed on zeros and dropped. Every WMMA call sits under a
// warp-uniform condition (tile index, nstrips, nkt, head_dim): all 32 lanes
// execute it. Smem rows are padded by 16 bytes (ldm a multiple of 8 bf16 / 4
// floats, each 16-row fragment 32-byte aligned, ldmatrix rows on distinct
// banks); the per-warp scratch lives in S, which is dead from the end of
// the softmax until the next key block.
//   R = clamp(8192 / D, 32, 128) rounded down to 16 (D 32/64: 128, 96: 80,
//   128: 64, 160: 48, 192/224/256: 32), Bk = 32. Dynamic smem Q [R][D + 8],
//   K, V [32][D + 8] bf16, S [R][36] fp32, P [R][40] bf16, per-row and
//   per-window ints: 44.5 KiB (D 32), 44.9 (192), 47.7 (96), 47.8 (160),
//   48.8 (128), 50.9 (224), 56.5 (64), 56.9 (256). Above 48 KiB (D 64, 128,
//   224, 256) the launch raises the kernel's limit (cudaFuncSetAttribute,
//   checked); no row position array (row r of a piece is at p0 + r / nh).
//   ptxas (CUDA 13.0): 252-254 registers (D 32: 168 on sm_80, 128 on
//   sm_90a; D 192 on sm_90a: 168), i.e. 2 blocks (8 warps) per SM; no
//   spills on sm_80, 8 to 40 bytes on sm_90a for D 32, 192 and 224.

constexpr int kTileWarps = kTileThreads / 32;
constexpr size_t align128(size_t b) { return (b + 127) / 128 * 128; }

template <int D>
struct WmmaCfg {
  static_assert(D % 32 == 0 && D >= 32 && D <= kMaxHeadDim, "D: a multiple of 32 in [32, 256]");
  static constexpr int kRows = (8192 / D > 128 ? 128 : (8192 / D < 32 ? 32 : 8192 / D)) / 16 * 16;
  static constexpr int kKeys = 32;             // Bk
  static constexpr int kDStride = D + 8;       // bf16 per Q, K, V row
  static constexpr int kSStride = kKeys + 4;   // floats per S row
  static constexpr int kPStride = kKeys + 8;   // bf16 per P row
  static constexpr int kStrips = kRows / 16;
  static constexpr int kKeyTiles = kKeys / 16;
  static constexpr int kDTiles = D / 16;
  static constexpr int kSTiles = kStrips * kKeyTiles;
  static constexpr int kOTiles = kStrips * kDTiles;
  static constexpr int kSPerWarp = (kSTiles + kTileWarps - 1) / kTileWarps;
  static constexpr int kOPerWarp = (kOTiles + kTileWarps - 1) / kTileWarps;
  static constexpr size_t kKOff = align128(2ull * kRows * kDStride);
  static constexpr size_t kVOff = kKOff + align128(2ull * kKeys * kDStride);
  static constexpr size_t kSOff = kVOff + align128(2ull * kKeys * kDStride);
  static constexpr size_t kPOff = kSOff + align128(4ull * kRows * kSStride);
  static constexpr size_t kCorrOff = kPOff + align128(2ull * kRows * kPStride);
  static constexpr size_t kWSeqOff = kCorrOff + align16(4ull * kRows);
  static constexpr size_t kWPosOff = kWSeqOff + align16(4ull * (kRows + 2));
  static constexpr size_t kSmemBytes = kWPosOff + align16(4ull * (kRows + 2));
  static_assert(kOPerWarp <= 8, "at most 8 accumulator fragments (64 floats) per thread");
  static_assert(kRows <= kTileThreads, "one softmax thread per row");
  static_assert(4ull * kRows * kSStride >= 4ull * 256 * kTileWarps, "per-warp scratch fits in S");
  static_assert(kSmemBytes <= 99 * 1024, "tile exceeds 99 KiB of shared memory");
};

template <int D>
__global__ void __launch_bounds__(kTileThreads) attention_tile_wmma_bf16_kernel(TileArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // bf16 WMMA needs sm_80; the build targets sm_80 and sm_90a only
#else
  namespace wmma = nvcuda::wmma;
  using C = WmmaCfg<D>;
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
  using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
  using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
  using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  constexpr int BK = C::kKeys;
  constexpr int DS = C::kDStride;
  constexpr int SS = C::kSStride;
  constexpr int PS = C::kPStride;
  LS_DYNAMIC_SHARED(uint4, smem_raw);
  char* const smem = reinterpret_cast<char*>(smem_raw);
  uint16_t* s_q = reinterpret_cast<uint16_t*>(smem);                  // [R][DS]
  uint16_t* s_k = reinterpret_cast<uint16_t*>(smem + C::kKOff);       // [BK][DS]
  uint16_t* s_v = reinterpret_cast<uint16_t*>(smem + C::kVOff);       // [BK][DS]
  float* s_s = reinterpret_cast<float*>(smem + C::kSOff);             // [R][SS]; scratch [4][16][16]
  uint16_t* s_p = reinterpret_cast<uint16_t*>(smem + C::kPOff);       // [R][PS]
  float* s_corr = reinterpret_cast<float*>(smem + C::kCorrOff);       // [R]
  int32_t* s_wseq = reinterpret_cast<int32_t*>(smem + C::kWSeqOff);   // [W + 2]: tokens w0 - 1 .. w1
  int32_t* s_wpos = reinterpret_cast<int32_t*>(smem + C::kWPosOff);   // [W + 2]
  auto bf = [](const uint16_t* p) { return reinterpret_cast<const __nv_bfloat16*>(p); };

  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  float* const scratch = s_s + warp * 256;  // 16 x 16 fp32, ld 16
  const int32_t hd = a.head_dim;            // a multiple of 16
  const int32_t kv_head = blockIdx.y / a.splits;
  const int32_t h0 = kv_head * a.group + (blockIdx.y % a.splits) * a.heads_per_block;
  const int32_t nh = min(a.heads_per_block, kv_head * a.group + a.group - h0);
  const int64_t kv_off = static_cast<int64_t>(kv_head) * hd;
  const PagedKvViewBf16& kv = a.kv;

  TileWindow win;
  win.load(a, s_wseq, s_wpos);

  for (int64_t t0 = win.w0; t0 < win.w1;) {
    bool isolated;
    const int64_t t1 = win.piece_end(t0, &isolated);
    if (isolated) {
      t0 = t1;
      continue;
    }
    const int32_t ntok = static_cast<int32_t>(t1 - t0);
    const int32_t nrows = ntok * nh;
    const int nstrips = (nrows + 15) / 16;
    const int32_t seq = win.seq_of(t0);
    const int32_t p0 = win.pos_of(t0);
    const int32_t plast = p0 + ntok - 1;

    // Q rows 0 .. 16 nstrips - 1 (zero past nrows), elements < head_dim.
    for (int r = warp; r < nstrips * 16; r += kTileWarps) {
      uint16_t* dst = s_q + r * DS;
      if (r < nrows) {
        const int64_t tok = t0 + r / nh;
        const uint16_t* src = a.q + (tok * a.num_q_heads + h0 + r % nh) * hd;
        for (int d = lane; d < hd; d += 32) dst[d] = src[d];
      } else {
        for (int d = lane; d < hd; d += 32) dst[d] = 0;
      }
    }

    FragAcc o[C::kOPerWarp];
#pragma unroll
    for (int i = 0; i < C::kOPerWarp; ++i) wmma::fill_fragment(o[i], 0.0f);
    float m = -INFINITY;  // softmax state of row tid (tid < nrows)
    float l = 0.0f;
    const int64_t blk0 = kv.block_indptr[seq];

    for (int32_t kb = 0; kb <= plast; kb += BK) {
      const int nk = min(BK, plast - kb + 1);
      const int nkt = (nk + 15) / 16;
      // K and V rows of positions kb .. kb + nk - 1, each from its own page;
      // rows nk .. 16 nkt - 1 zero (P is 0 there, and 0 * NaN would not be).
      for (int j = warp; j < nkt * 16; j += kTileWarps) {
        uint16_t* kdst = s_k + j * DS;
        uint16_t* vdst = s_v + j * DS;
        if (j >= nk) {
          for (int d = lane; d < hd; d += 32) kdst[d] = vdst[d] = 0;
          continue;
        }
        const int32_t pos = kb + j;
        const uint16_t* page =
            kv.pool + static_cast<int64_t>(kv.page_ids[(blk0 + pos / kv.page_tokens) * kv.num_layers +
                                                       kv.layer]) *
                          kv.page_stride;
        const int64_t slot = pos % kv.page_tokens;
        const uint16_t* krow = page + slot * kv.kv_dim + kv_off;
        const uint16_t* vrow = page + (static_cast<int64_t>(kv.page_tokens) + slot) * kv.kv_dim + kv_off;
        if (a.vec8) {
          for (int c = lane; c < hd / 8; c += 32) {
            cuda::st_bf16x8(kdst + 8 * c, cuda::ld_bf16x8(krow + 8 * c));
            cuda::st_bf16x8(vdst + 8 * c, cuda::ld_bf16x8(vrow + 8 * c));
          }
        } else {
          for (int d = lane; d < hd; d += 32) {
            kdst[d] = krow[d];
            vdst[d] = vrow[d];
          }
        }
      }
      __syncthreads();

      // S = Q K^T, unscaled: tile t = (strip t / 2, keys 16 (t % 2) ..).
#pragma unroll
      for (int i = 0; i < C::kSPerWarp; ++i) {
        const int t = warp + kTileWarps * i;
        const int rs = t / C::kKeyTiles;
        const int kc = t % C::kKeyTiles;
        if (t < C::kSTiles && rs < nstrips && kc < nkt) {
          FragAcc sacc;
          wmma::fill_fragment(sacc, 0.0f);
#pragma unroll
          for (int k = 0; k < C::kDTiles; ++k) {
            if (16 * k < hd) {
              FragA qa;
              FragBCol kt;
              wmma::load_matrix_sync(qa, bf(s_q + rs * 16 * DS + 16 * k), DS);
              wmma::load_matrix_sync(kt, bf(s_k + kc * 16 * DS + 16 * k), DS);
              wmma::mma_sync(sacc, qa, kt, sacc);
            }
          }
          wmma::store_matrix_sync(s_s + rs * 16 * SS + kc * 16, sacc, SS, wmma::mem_row_major);
        }
      }
      __syncthreads();

      // Online softmax, one thread per row; P (bf16) for keys < 16 nkt, 0
      // past nk and past the row's position. Key 0 is in the first block and
      // every row sees it, so m is finite from then on. A thread walks its
      // row from key tid % 32 on: with SS = 4 (mod 32) words, rows in order
      // would put a warp's 32 reads on 8 banks.
      if (tid < nstrips * 16) {
        const float* srow = s_s + tid * SS;
        uint16_t* prow = s_p + tid * PS;
        if (tid < nrows) {
          const int32_t vis = min(nk, p0 + tid / nh - kb + 1);  // keys j < vis are visible
          float mx = m;
          for (int jj = 0; jj < BK; ++jj) {
            const int j = (jj + tid) % BK;
            if (j < vis) mx = fmaxf(mx, srow[j] * a.scale_log2);
          }
          const float corr = exp2f(m - mx);  // m = -inf the first time: 0
          float sum = 0.0f;
          for (int jj = 0; jj < BK; ++jj) {
            const int j = (jj + tid) % BK;
            if (j < nkt * 16) {
              const float p = j < vis ? cuda::round_bf16(exp2f(srow[j] * a.scale_log2 - mx)) : 0.0f;
              cuda::st_bf16(prow + j, p);
              sum += p;
            }
          }
          l = l * corr + sum;
          m = mx;
          s_corr[tid] = corr;
        } else {
          for (int j = 0; j < nkt * 16; ++j) prow[j] = 0;
          s_corr[tid] = 1.0f;
        }
      }
      __syncthreads();

      // O = O * corr + P V: tile t = (strip t / (D / 16), head elements 16 (t % (D / 16)) ..).
#pragma unroll
      for (int i = 0; i < C::kOPerWarp; ++i) {
        const int t = warp + kTileWarps * i;
        const int rs = t / C::kDTiles;
        const int dc = t % C::kDTiles;
        if (t < C::kOTiles && rs < nstrips && 16 * dc < hd) {
          const float c = s_corr[rs * 16 + lane % 16];
          if (__any_sync(0xffffffffu, c != 1.0f)) {
            wmma::store_matrix_sync(scratch, o[i], 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) scratch[e] *= s_corr[rs * 16 + e / 16];
            __syncwarp();
            wmma::load_matrix_sync(o[i], scratch, 16, wmma::mem_row_major);
            __syncwarp();  // the scratch is rewritten by the next tile
          }
          for (int ks = 0; ks < nkt; ++ks) {
            FragA pa;
            FragBRow vb;
            wmma::load_matrix_sync(pa, bf(s_p + rs * 16 * PS + 16 * ks), PS);
            wmma::load_matrix_sync(vb, bf(s_v + 16 * ks * DS + 16 * dc), DS);
            wmma::mma_sync(o[i], pa, vb, o[i]);
          }
        }
      }
      __syncthreads();  // K, V, S (scratch), P are rewritten by the next key block
    }

    if (tid < nrows) s_corr[tid] = 1.0f / l;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < C::kOPerWarp; ++i) {
      const int t = warp + kTileWarps * i;
      const int rs = t / C::kDTiles;
      const int dc = t % C::kDTiles;
      if (t < C::kOTiles && rs < nstrips && 16 * dc < hd) {
        wmma::store_matrix_sync(scratch, o[i], 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {
          const int r = rs * 16 + e / 16;
          if (r < nrows) {
            const int64_t tok = t0 + r / nh;
            uint16_t* dst = a.out + (tok * a.num_q_heads + h0 + r % nh) * hd + 16 * dc + e % 16;
            cuda::st_bf16(dst, scratch[e] * s_corr[r]);
          }
        }
        __syncwarp();
      }
    }
    __syncthreads();  // s_q, s_corr, S are rewritten by the next piece
    t0 = t1;
  }
#endif
}

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

template <int D>
Status launch_tile(const AttentionBf16Params& p, cudaStream_t stream) {
  using C = TileCfg<D>;
  const TileArgs a = tile_args(p, C::kRows);
  LS_LAUNCH(attention_tile_bf16_kernel<D>, tile_grid(p, a), kTileThreads, C::kSmemBytes, stream)(a);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

template <int D>
Status launch_tile_wmma(const AttentionBf16Params& p, cudaStream_t stream) {
  using C = WmmaCfg<D>;
  const TileArgs a = tile_args(p, C::kRows);
  if (C::kSmemBytes > kSmemLimit) {
    // The size is fixed per D: raise the limit once per kernel, not per launch.
    static const cudaError_t raised = cudaFuncSetAttribute(
        attention_tile_wmma_bf16_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(C::kSmemBytes));
    LS_CUDA_CHECK(raised);
  }
  LS_LAUNCH(attention_tile_wmma_bf16_kernel<D>, tile_grid(p, a), kTileThreads, C::kSmemBytes, stream)(a);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

// One instantiation per head_dim rounded up to 32: tensor cores when
// head_dim is a multiple of 16 (every common model), else the SIMT tiles.
Status launch_tiles(const AttentionBf16Params& p, cudaStream_t stream) {
  const int64_t d32 = (p.head_dim + 31) / 32;
  if (p.head_dim % 16 == 0) {
    switch (d32) {
      case 1: return launch_tile_wmma<32>(p, stream);
      case 2: return launch_tile_wmma<64>(p, stream);
      case 3: return launch_tile_wmma<96>(p, stream);
      case 4: return launch_tile_wmma<128>(p, stream);
      case 5: return launch_tile_wmma<160>(p, stream);
      case 6: return launch_tile_wmma<192>(p, stream);
      case 7: return launch_tile_wmma<224>(p, stream);
      default: return launch_tile_wmma<256>(p, stream);
    }
  }
  switch (d32) {
    case 1: return launch_tile<32>(p, stream);
    case 2: return launch_tile<64>(p, stream);
    case 3: return launch_tile<96>(p, stream);
    case 4: return launch_tile<128>(p, stream);
    case 5: return launch_tile<160>(p, stream);
    case 6: return launch_tile<192>(p, stream);
    case 7: return launch_tile<224>(p, stream);
    default: return launch_tile<256>(p, stream);
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
  // Runs (prefill, chunked prefill) in tiles; then the isolated (decode) tokens.
  LS_RETURN_IF_ERROR(launch_tiles(p, stream));
  const dim3 grid(static_cast<unsigned>(p.num_tokens), static_cast<unsigned>(p.num_q_heads));
  LS_LAUNCH(attention_bf16_kernel, grid, kWarps * 32, 0, stream)(
      p.q, p.out, p.token_seq, p.positions, p.num_tokens, static_cast<int32_t>(p.num_q_heads),
      static_cast<int32_t>(p.num_q_heads / p.num_kv_heads), static_cast<int32_t>(p.head_dim),
      p.scale, p.kv);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
