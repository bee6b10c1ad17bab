// The loop nest every gemm_bf16 kernel shares; the per-ISA files supply the
// register tile. Included only by those files (see gemm_bf16_params.h).
//
// W rows are read from memory once per call: a block of NR rows (NR x KC
// bf16, inside L1/L2) meets every MR-row tile of x before the next block.
// x is cut into MC x KC chunks that stay in L2 (prefill); below 17 rows KC
// is all of k, so each output is reduced once.
#pragma once

#include <cstdint>

#include "kernels/gemm/gemm_bf16_params.h"

namespace loraserve::kernels::detail {

// Rows of x per chunk (a multiple of every tile's MR).
constexpr int64_t kGemmBf16RowChunk = 128;

// Tile::kMR, Tile::kNR and Tile::run(mr, nr, p, m0, n0, k0, kc, accumulate)
// computing y[m0 .. m0+mr, n0 .. n0+nr] over k in [k0, k0 + kc).
template <class Tile>
inline void gemm_bf16_blocked(const GemmBf16Params& p) {
  const int64_t n_end = p.n_end < 0 ? p.n : p.n_end;
  const int64_t kc_max = p.m > 16 ? 2048 : p.k;
  const int64_t mc_max = kGemmBf16RowChunk;
  for (int64_t m0 = 0; m0 < p.m; m0 += mc_max) {
    const int64_t mc = p.m - m0 < mc_max ? p.m - m0 : mc_max;
    for (int64_t k0 = 0; k0 < p.k; k0 += kc_max) {
      const int64_t kc = p.k - k0 < kc_max ? p.k - k0 : kc_max;
      const bool accumulate = p.accumulate || k0 > 0;
      for (int64_t n0 = p.n_begin; n0 < n_end; n0 += Tile::kNR) {
        const int nr = static_cast<int>(n_end - n0 < Tile::kNR ? n_end - n0 : Tile::kNR);
        for (int64_t mm = m0; mm < m0 + mc; mm += Tile::kMR) {
          const int mr = static_cast<int>(m0 + mc - mm < Tile::kMR ? m0 + mc - mm : Tile::kMR);
          Tile::run(mr, nr, p, mm, n0, k0, kc, accumulate);
        }
      }
    }
  }
}

}  // namespace loraserve::kernels::detail

// Expands to a switch calling TILE<mr, nr>(args) for 1 <= mr <= 4, 1 <= nr <= 6.
#define LS_GEMM_TILE_CASE_NR(TILE, MR, nr, ...) \
  switch (nr) {                                 \
    case 1: TILE<MR, 1>(__VA_ARGS__); break;    \
    case 2: TILE<MR, 2>(__VA_ARGS__); break;    \
    case 3: TILE<MR, 3>(__VA_ARGS__); break;    \
    case 4: TILE<MR, 4>(__VA_ARGS__); break;    \
    case 5: TILE<MR, 5>(__VA_ARGS__); break;    \
    default: TILE<MR, 6>(__VA_ARGS__); break;   \
  }
#define LS_GEMM_TILE_SWITCH(TILE, mr, nr, ...)                     \
  switch (mr) {                                                    \
    case 1: LS_GEMM_TILE_CASE_NR(TILE, 1, nr, __VA_ARGS__) break;  \
    case 2: LS_GEMM_TILE_CASE_NR(TILE, 2, nr, __VA_ARGS__) break;  \
    case 3: LS_GEMM_TILE_CASE_NR(TILE, 3, nr, __VA_ARGS__) break;  \
    default: LS_GEMM_TILE_CASE_NR(TILE, 4, nr, __VA_ARGS__) break; \
  }
