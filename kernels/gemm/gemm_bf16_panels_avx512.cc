// gemm_bf16 over 16-column panels (gemm_bf16_panels.h) with VDPBF16PS.
// Built with the AVX-512 flags; includes no library headers (see
// gemm_bf16_params.h).
//
// Register tile: MR <= 8 rows of x against NR <= 3 panels, 24 accumulators
// whose lanes are final outputs. Per k pair: NR 64-byte weight loads, MR
// 4-byte broadcasts of x, MR * NR VDPBF16PS. Each panel is one sequential
// stream; the tile prefetches it 4 KiB ahead, which the hardware prefetcher
// alone does not keep up with at 8-32 rows (measured: 1.2-1.6x over the
// row-layout kernel at 8-128 rows on Zen 5, 2 threads). Above 8 rows the
// last row tile of each k block prefetches the next block into L2, so that
// memory keeps streaming while it computes from L1 (3-9% at 16 rows, with
// 96 KiB blocks read back from L2; 24 KiB blocks, which the next row tile
// reads from L1, gained another 2-8% in B=16 decode steps).
#include <immintrin.h>

#include <cstdint>

#include "kernels/gemm/gemm_bf16_params.h"

namespace loraserve::kernels::detail {
namespace {

constexpr int64_t kCols = 16;  // kBf16PanelCols
constexpr int kMaxMR = 8, kMaxNR = 3;
// k per block when several row tiles share the panels: a block of 3 panels
// is 24 KiB, read from memory by the first row tile and from L1 (48 KiB on
// Zen 5, 32 KiB on older cores) by the others. Blocks of 128-1024 measured
// within 5% of each other at 16 rows; 256 was the fastest.
constexpr int64_t kPanelBlockK = 256;
constexpr int64_t kPrefetchElems = 2048;  // 4 KiB ahead in the panel's stream

// NEXT: the last row tile of a k block, which reads the block from L1 while
// memory would idle; it prefetches the next block into L2 instead of its own
// stream ahead (next[j]: that block's start in panel j, null past its end).
template <int MR, int NR, bool NEXT>
void panel_tile(const GemmBf16Params& p, int64_t m0, int64_t panel0, int64_t k0, int64_t kc,
                bool load_y, const __mmask16* masks, const uint16_t* const* next) {
  const int64_t ldy = p.ldy ? p.ldy : p.n;
  const uint16_t* w[NR];
  for (int j = 0; j < NR; ++j) w[j] = p.w + (panel0 + j) * kCols * p.k + k0 * kCols;
  const uint16_t* x[MR];
  for (int i = 0; i < MR; ++i) x[i] = p.xb + (m0 + i) * p.k + k0;
  __m512 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int j = 0; j < NR; ++j) {
      acc[i][j] = load_y ? _mm512_maskz_loadu_ps(masks[j], p.y + (m0 + i) * ldy + (panel0 + j) * kCols)
                         : _mm512_setzero_ps();
    }
  }
  for (int64_t kk = 0; kk < kc; kk += 2) {
    __m512bh wv[NR];
#pragma GCC unroll 3
    for (int j = 0; j < NR; ++j) {
      if (NEXT) {
        if (next[j] != nullptr) _mm_prefetch(reinterpret_cast<const char*>(next[j] + kk * kCols), _MM_HINT_T1);
      } else {
        _mm_prefetch(reinterpret_cast<const char*>(w[j] + kk * kCols + kPrefetchElems), _MM_HINT_T0);
      }
      wv[j] = (__m512bh)_mm512_loadu_si512(w[j] + kk * kCols);
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512bh xv = (__m512bh)_mm512_broadcastd_epi32(_mm_loadu_si32(x[i] + kk));
#pragma GCC unroll 3
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int j = 0; j < NR; ++j) {
      _mm512_mask_storeu_ps(p.y + (m0 + i) * ldy + (panel0 + j) * kCols, masks[j], acc[i][j]);
    }
  }
}

template <int NR, bool NEXT>
void panel_tile_rows(int mr, const GemmBf16Params& p, int64_t m0, int64_t panel0, int64_t k0,
                     int64_t kc, bool load_y, const __mmask16* masks, const uint16_t* const* next) {
  switch (mr) {
    case 1: panel_tile<1, NR, NEXT>(p, m0, panel0, k0, kc, load_y, masks, next); break;
    case 2: panel_tile<2, NR, NEXT>(p, m0, panel0, k0, kc, load_y, masks, next); break;
    case 3: panel_tile<3, NR, NEXT>(p, m0, panel0, k0, kc, load_y, masks, next); break;
    case 4: panel_tile<4, NR, NEXT>(p, m0, panel0, k0, kc, load_y, masks, next); break;
    case 5: panel_tile<5, NR, NEXT>(p, m0, panel0, k0, kc, load_y, masks, next); break;
    case 6: panel_tile<6, NR, NEXT>(p, m0, panel0, k0, kc, load_y, masks, next); break;
    case 7: panel_tile<7, NR, NEXT>(p, m0, panel0, k0, kc, load_y, masks, next); break;
    default: panel_tile<8, NR, NEXT>(p, m0, panel0, k0, kc, load_y, masks, next); break;
  }
}

template <bool NEXT>
void panel_tile_any(int nr, int mr, const GemmBf16Params& p, int64_t m0, int64_t panel0,
                    int64_t k0, int64_t kc, bool load_y, const __mmask16* masks,
                    const uint16_t* const* next) {
  switch (nr) {
    case 1: panel_tile_rows<1, NEXT>(mr, p, m0, panel0, k0, kc, load_y, masks, next); break;
    case 2: panel_tile_rows<2, NEXT>(mr, p, m0, panel0, k0, kc, load_y, masks, next); break;
    default: panel_tile_rows<3, NEXT>(mr, p, m0, panel0, k0, kc, load_y, masks, next); break;
  }
}

}  // namespace

void gemm_bf16_panels_avx512bf16(const GemmBf16Params& p) {
  const int64_t n_end = p.n_end < 0 ? p.n : p.n_end;
  const int64_t panel_end = (n_end + kCols - 1) / kCols;
  // One row tile covers all of x below 9 rows: no block is read twice, so k
  // is not blocked. Above, blocks of x rows share each block of panels.
  const int64_t kc_max = p.m > kMaxMR ? kPanelBlockK : p.k;
  const int64_t row_chunk = 128;  // x rows whose bf16 copy stays in L2 across a block
  for (int64_t mc0 = 0; mc0 < p.m; mc0 += row_chunk) {
    const int64_t mc_end = p.m - mc0 < row_chunk ? p.m : mc0 + row_chunk;
    for (int64_t panel0 = p.n_begin / kCols; panel0 < panel_end; panel0 += kMaxNR) {
      const int nr = static_cast<int>(panel_end - panel0 < kMaxNR ? panel_end - panel0 : kMaxNR);
      __mmask16 masks[kMaxNR];
      for (int j = 0; j < nr; ++j) {
        const int64_t left = n_end - (panel0 + j) * kCols;
        masks[j] = left >= kCols ? static_cast<__mmask16>(0xffff)
                                 : static_cast<__mmask16>((1u << left) - 1);
      }
      for (int64_t k0 = 0; k0 < p.k; k0 += kc_max) {
        const int64_t kc = p.k - k0 < kc_max ? p.k - k0 : kc_max;
        const bool load_y = p.accumulate || k0 > 0;
        // The block after this one (the next k block of these panels, else
        // the first of the next ones), when it is as long as this one.
        int64_t next_panel = panel0, next_k = k0 + kc;
        if (next_k >= p.k) {
          next_panel = panel0 + kMaxNR;
          next_k = 0;
        }
        const uint16_t* next[kMaxNR] = {nullptr, nullptr, nullptr};
        if ((p.k - next_k < kc_max ? p.k - next_k : kc_max) == kc) {
          for (int j = 0; j < kMaxNR && next_panel + j < panel_end; ++j) {
            next[j] = p.w + (next_panel + j) * kCols * p.k + next_k * kCols;
          }
        }
        for (int64_t m0 = mc0; m0 < mc_end; m0 += kMaxMR) {
          const int mr = static_cast<int>(mc_end - m0 < kMaxMR ? mc_end - m0 : kMaxMR);
          // One row tile reads the block from memory: it streams ahead. The
          // last of several reads it from cache and fetches the next block.
          if (m0 > mc0 && m0 + kMaxMR >= mc_end) {
            panel_tile_any<true>(nr, mr, p, m0, panel0, k0, kc, load_y, masks, next);
          } else {
            panel_tile_any<false>(nr, mr, p, m0, panel0, k0, kc, load_y, masks, next);
          }
        }
      }
    }
  }
}

}  // namespace loraserve::kernels::detail
