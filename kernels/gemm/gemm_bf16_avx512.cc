// gemm_bf16 on AVX-512: the VDPBF16PS kernel (kAvx512Bf16) and the widening
// FMA kernel (kAvx512), plus the f32 vector helpers. Built with
// -mavx512f -mavx512bw -mavx512vl -mavx512bf16 and called only after
// detect_cpu_isa() found those sets; it includes no library headers.
#include <immintrin.h>

#include <cstdint>

#include "kernels/gemm/gemm_bf16_blocking.h"

namespace loraserve::kernels::detail {
namespace {

inline int64_t ldx_of(const GemmBf16Params& p) { return p.ldx ? p.ldx : p.k; }
inline int64_t ldy_of(const GemmBf16Params& p) { return p.ldy ? p.ldy : p.n; }

inline void store(float* y, float v, bool accumulate) { *y = accumulate ? *y + v : v; }

// MR rows of x (bf16) against NR rows of W: MR*NR accumulators of 16 lanes,
// each lane summing pairs along k; reduced once at the end.
template <int MR, int NR>
void tile_dp(const GemmBf16Params& p, int64_t m0, int64_t n0, int64_t k0, int64_t kc,
             bool accumulate, const uint16_t* next) {
  const uint16_t* x[MR];
  const uint16_t* w[NR];
  for (int i = 0; i < MR; ++i) x[i] = p.xb + (m0 + i) * p.k + k0;
  for (int j = 0; j < NR; ++j) w[j] = p.w + (n0 + j) * p.k + k0;
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t kk = 0;
  for (; kk + 32 <= kc; kk += 32) {
    if (next != nullptr) {
      for (int j = 0; j < NR; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(next + j * p.k + kk), _MM_HINT_T0);
      }
    }
    __m512bh wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = (__m512bh)_mm512_loadu_si512(w[j] + kk);
    for (int i = 0; i < MR; ++i) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x[i] + kk);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
  if (kk < kc) {  // the tail: masked loads read zeros past k
    const __mmask32 mask = static_cast<__mmask32>((1ull << (kc - kk)) - 1);
    __m512bh wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(mask, w[j] + kk);
    for (int i = 0; i < MR; ++i) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(mask, x[i] + kk);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
  const int64_t ldy = ldy_of(p);
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      store(p.y + (m0 + i) * ldy + n0 + j, _mm512_reduce_add_ps(acc[i][j]), accumulate);
}

struct DpTile {
  static constexpr int kMR = 4, kNR = 6;
  static constexpr int64_t kMC = kGemmBf16RowChunk;
  static void run(int mr, int nr, const GemmBf16Params& p, int64_t m0, int64_t n0, int64_t k0,
                  int64_t kc, bool accumulate) {
    // The first tile of a block fetches the next block's weight rows, so
    // that the reads from memory overlap the block's other tiles (at 8-16
    // rows a block is as much memory as arithmetic). One tile per block
    // (m <= 4) leaves it to the hardware prefetcher.
    const int64_t n_end = p.n_end < 0 ? p.n : p.n_end;
    const uint16_t* next = p.m > kMR && m0 % kMC == 0 && nr == kNR && n0 + 2 * kNR <= n_end
                               ? p.w + (n0 + kNR) * p.k + k0
                               : nullptr;
    LS_GEMM_TILE_SWITCH(tile_dp, mr, nr, p, m0, n0, k0, kc, accumulate, next)
  }
};

// 16 bf16 weights widened to f32: the bf16 bits are the high half of an f32.
inline __m512 widen(const uint16_t* w) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w))), 16));
}
inline __m512 widen_masked(const uint16_t* w, __mmask16 mask) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, w)), 16));
}

template <int MR, int NR>
void tile_fma(const GemmBf16Params& p, int64_t m0, int64_t n0, int64_t k0, int64_t kc,
              bool accumulate) {
  const int64_t ldx = ldx_of(p);
  const float* x[MR];
  const uint16_t* w[NR];
  for (int i = 0; i < MR; ++i) x[i] = p.x + (m0 + i) * ldx + k0;
  for (int j = 0; j < NR; ++j) w[j] = p.w + (n0 + j) * p.k + k0;
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t kk = 0;
  for (; kk + 16 <= kc; kk += 16) {
    __m512 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = widen(w[j] + kk);
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_loadu_ps(x[i] + kk);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  if (kk < kc) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (kc - kk)) - 1);
    __m512 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = widen_masked(w[j] + kk, mask);
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x[i] + kk);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  const int64_t ldy = ldy_of(p);
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      store(p.y + (m0 + i) * ldy + n0 + j, _mm512_reduce_add_ps(acc[i][j]), accumulate);
}

struct FmaTile {
  static constexpr int kMR = 4, kNR = 6;
  static void run(int mr, int nr, const GemmBf16Params& p, int64_t m0, int64_t n0, int64_t k0,
                  int64_t kc, bool accumulate) {
    LS_GEMM_TILE_SWITCH(tile_fma, mr, nr, p, m0, n0, k0, kc, accumulate)
  }
};

}  // namespace

void gemm_bf16_avx512bf16(const GemmBf16Params& p) { gemm_bf16_blocked<DpTile>(p); }
void gemm_bf16_avx512(const GemmBf16Params& p) { gemm_bf16_blocked<FmaTile>(p); }

void f32_to_bf16_avx512bf16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh b = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)b);
  }
  if (i < n) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m256bh b = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, src + i));
    _mm256_mask_storeu_epi16(dst + i, mask, (__m256i)b);
  }
}

float dot_f32_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i < n; i += 16) {
    const int64_t left = n - i;
    const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xffff)
                                      : static_cast<__mmask16>((1u << left) - 1);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i), _mm512_maskz_loadu_ps(mask, b + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

void axpy_f32_avx512(float alpha, const float* x, float* y, int64_t n) {
  const __m512 a = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  }
  if (i < n) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, mask,
                          _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(mask, x + i),
                                          _mm512_maskz_loadu_ps(mask, y + i)));
  }
}

}  // namespace loraserve::kernels::detail
