// Attention for runs of linked tokens (prefill) on tensor cores: the same
// tiles as attention_tile_bf16.cu, both products with WMMA.
//
// head_dim % 16 == 0 (the dispatcher's choice). Same window / piece / row
// layout as the SIMT tiles; only the math moves to bf16 m16n16k16 WMMA
// with fp32 accumulators.
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
#include <mma.h>

#include <cmath>

#include "kernels/attention/attention_bf16_common.cuh"

namespace loraserve::kernels::attention_detail {
namespace {

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

}  // namespace

// One instantiation per head_dim rounded up to 32 (head_dim % 16 == 0).
Status launch_attention_tile_wmma(const AttentionBf16Params& p, cudaStream_t stream) {
  switch ((p.head_dim + 31) / 32) {
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

}  // namespace loraserve::kernels::attention_detail
