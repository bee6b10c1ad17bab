// Attention for runs of linked tokens (prefill), SIMT tiles with fp32 FMAs:
// section 1 of the design note in attention_bf16.cu. Any head_dim <= 256;
// the dispatcher sends head_dim % 16 == 0 to attention_tile_wmma_bf16.cu.
#include <cmath>

#include "kernels/attention/attention_bf16_common.cuh"

namespace loraserve::kernels::attention_detail {
namespace {

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

template <int D>
Status launch_tile(const AttentionBf16Params& p, cudaStream_t stream) {
  using C = TileCfg<D>;
  const TileArgs a = tile_args(p, C::kRows);
  LS_LAUNCH(attention_tile_bf16_kernel<D>, tile_grid(p, a), kTileThreads, C::kSmemBytes, stream)(a);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace

// One instantiation per head_dim rounded up to 32.
Status launch_attention_tile_simt(const AttentionBf16Params& p, cudaStream_t stream) {
  switch ((p.head_dim + 31) / 32) {
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

}  // namespace loraserve::kernels::attention_detail
