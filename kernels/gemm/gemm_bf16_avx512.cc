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

// Lane j of the result is the sum of the 16 lanes of the j-th argument:
// three hadd levels instead of four separate reductions.
inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  const __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
  const __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
  const __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
  const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a8, b8), _mm256_hadd_ps(c8, d8));
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// sums[j] = the sum of acc[j]'s lanes, j < NR (NR <= 8).
template <int NR>
inline void reduce_row(const __m512* acc, float* sums) {
  const __m512 z = _mm512_setzero_ps();
  for (int j = 0; j < NR; j += 4) {
    const __m128 r = reduce4(acc[j], j + 1 < NR ? acc[j + 1] : z, j + 2 < NR ? acc[j + 2] : z,
                             j + 3 < NR ? acc[j + 3] : z);
    _mm_storeu_ps(sums + j, r);
  }
}

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
  for (int i = 0; i < MR; ++i) {
    float sums[8];
    reduce_row<NR>(acc[i], sums);
    for (int j = 0; j < NR; ++j) store(p.y + (m0 + i) * ldy + n0 + j, sums[j], accumulate);
  }
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

// 16 values of an f32 or bf16 vector (a K/V row, a LoRA image) as f32: f32
// loads as it is, bf16 is widened exactly; `m` masks a row's tail.
inline __m512 load16(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(__mmask16 m, const uint16_t* p) { return widen_masked(p, m); }
template <typename T>
inline __m512 load16(const T* p) { return load16(static_cast<__mmask16>(0xffff), p); }

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

namespace {
template <typename T>
float dot_t(const float* a, const T* b, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), load16(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), load16(b + i + 16), acc1);
  }
  for (; i < n; i += 16) {
    const int64_t left = n - i;
    const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xffff)
                                      : static_cast<__mmask16>((1u << left) - 1);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i), load16(mask, b + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

template <typename T>
void axpy_t(float alpha, const T* x, float* y, int64_t n) {
  const __m512 a = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, load16(x + i), _mm512_loadu_ps(y + i)));
  }
  if (i < n) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, mask,
                          _mm512_fmadd_ps(a, load16(mask, x + i), _mm512_maskz_loadu_ps(mask, y + i)));
  }
}
}  // namespace

float dot_f32_avx512(const float* a, const float* b, int64_t n) { return dot_t(a, b, n); }
float dot_f32_avx512(const float* a, const uint16_t* b, int64_t n) { return dot_t(a, b, n); }
void axpy_f32_avx512(float alpha, const float* x, float* y, int64_t n) { axpy_t(alpha, x, y, n); }
void axpy_f32_avx512(float alpha, const uint16_t* x, float* y, int64_t n) { axpy_t(alpha, x, y, n); }

namespace {

// exp(x) for x <= 0 down to -87 (below: 0): Cephes' range reduction
// x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial for exp(r), then 2^n by
// scalef. Relative error about 2e-7.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  y = _mm512_fmadd_ps(y, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(y, n);
}

}  // namespace

void max_argmax_avx512(const float* x, int64_t n, float* max_out, int64_t* argmax_out,
                       bool* finite_out) {
  // Pass 1: the maximum and whether anything is NaN or infinite (x - x is 0
  // exactly for finite x, NaN otherwise).
  __m512 vmax = _mm512_set1_ps(-__builtin_inff());
  __m512 bad = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    vmax = _mm512_max_ps(vmax, v);
    bad = _mm512_add_ps(bad, _mm512_sub_ps(v, v));
  }
  float m = _mm512_reduce_max_ps(vmax);
  float b = _mm512_reduce_add_ps(bad);
  for (; i < n; ++i) {
    m = x[i] > m ? x[i] : m;
    b += x[i] - x[i];
  }
  *finite_out = b == 0.0f;
  *max_out = m;
  // Pass 2: the first index holding it (lowest id wins ties, as argmax does).
  const __m512 vm = _mm512_set1_ps(m);
  for (i = 0; i + 16 <= n; i += 16) {
    const __mmask16 eq = _mm512_cmpeq_ps_mask(_mm512_loadu_ps(x + i), vm);
    if (eq) {
      *argmax_out = i + __builtin_ctz(eq);
      return;
    }
  }
  for (; i < n; ++i) {
    if (x[i] == m) {
      *argmax_out = i;
      return;
    }
  }
  *argmax_out = 0;
}

double sum_exp_avx512(const float* x, int64_t n, float shift) {
  const __m512 s = _mm512_set1_ps(shift);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_add_ps(acc0, exp_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), s)));
    acc1 = _mm512_add_ps(acc1, exp_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), s)));
  }
  double total = static_cast<double>(_mm512_reduce_add_ps(acc0)) + _mm512_reduce_add_ps(acc1);
  for (; i < n; i += 16) {
    const int64_t left = n - i;
    const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xffff)
                                      : static_cast<__mmask16>((1u << left) - 1);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), s));
    total += _mm512_mask_reduce_add_ps(mask, e);
  }
  return total;
}

void silu_mul_avx512(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t left = n - i;
    const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xffff)
                                      : static_cast<__mmask16>((1u << left) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(mask, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(mask, up + i);
    // g / (1 + exp(-g)); exp_ps clamps -g at 88, where the quotient is 0 anyway.
    const __m512 den = _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g)));
    _mm512_mask_storeu_ps(out + i, mask, _mm512_mul_ps(_mm512_div_ps(g, den), u));
  }
}

namespace {
inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
}
}  // namespace

float softmax_exp_avx512(float* s, int64_t n) {
  __m512 vmax = _mm512_set1_ps(-__builtin_inff());
  for (int64_t i = 0; i < n; i += 16) {
    vmax = _mm512_mask_max_ps(vmax, tail_mask(n - i), vmax, _mm512_maskz_loadu_ps(tail_mask(n - i), s + i));
  }
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), m));
    _mm512_mask_storeu_ps(s + i, k, e);
    sum = _mm512_mask_add_ps(sum, k, sum, e);
  }
  return _mm512_reduce_add_ps(sum);
}

namespace {
// GQA, head_dim 64: the H query heads (1..4) that share one KV head read
// each K/V row once. With four heads the scores of four rows are reduced
// together (reduce16: 512 tokens 13.5-14.7 -> 12.9-13.6 ms in
// attention_bench, 2048 55-60 -> 51 ms); otherwise a row's heads (reduce4).
// Each row loop prefetches the row kRowsAhead ahead: a paged cache's rows are
// scattered, and one KV head's slice is 128 B in every 1 KiB row, which the
// hardware prefetcher does not follow (decode attention of 16 sequences of
// 512 tokens, 16 layers: 27-29 ms a step without, 19-20 with 8 rows ahead;
// 16 ahead took 512 tokens 15.7-15.8 -> 13.4 ms, 2048 64-66 -> 53-54 ms in
// attention_bench, and 32 no better: a row takes ~50 cycles, so 8 rows ahead
// was less than the memory's latency).
// (The two loops spell the prefetch out: the same lines as a shared inline
// helper compiled to a schedule that measured 1.4-1.6x slower here.)
constexpr int64_t kRowsAhead = 16;
// v[4a + i] -> lane 4a + i of one vector: the sum of v[4a + i]'s 16 lanes
// (pairs of vectors folded together, halving the lanes each time: 45
// shuffles and adds for 16 sums, where reduce4 takes about 5 per sum).
inline __m512 reduce16(const __m512* v) {
  __m512 s[8], t[4], x[2];
  for (int i = 0; i < 8; ++i) {  // per 128-bit lane: v[2i], v[2i+1] alternating
    s[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
  for (int i = 0; i < 4; ++i) {  // per 128-bit lane: v[4i .. 4i+3]
    t[i] = _mm512_add_ps(_mm512_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(s[2 * i], s[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  for (int i = 0; i < 2; ++i) {  // 128-bit lanes folded in pairs
    x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xdd));
  }
  return _mm512_add_ps(_mm512_shuffle_f32x4(x[0], x[1], 0x88),
                       _mm512_shuffle_f32x4(x[0], x[1], 0xdd));
}

template <int H, typename T>
void dot_rows_heads_d64(const float* q, const T* const* rows, int64_t offset, int64_t n,
                        float scale, float* out) {
  __m512 qv[H][4];
  for (int h = 0; h < H; ++h)
    for (int c = 0; c < 4; ++c) qv[h][c] = _mm512_loadu_ps(q + h * 64 + c * 16);
  const __m512 z = _mm512_setzero_ps();
  int64_t j = 0;
  if constexpr (H == 4) {
    // Four rows at a time: their 16 (row, head) sums reduced together and
    // stored as four 4-row runs, one per head.
    const __m512 sv = _mm512_set1_ps(scale);
    for (; j + 4 <= n; j += 4) {
      __m512 acc[16];
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        const T* k = rows[j + r] + offset;
        if (j + r + kRowsAhead < n) {
          const char* f = reinterpret_cast<const char*>(rows[j + r + kRowsAhead] + offset);
          _mm_prefetch(f, _MM_HINT_T0);
          _mm_prefetch(f + 64 * sizeof(T) - 1, _MM_HINT_T0);
        }
        const __m512 k0 = load16(k), k1 = load16(k + 16), k2 = load16(k + 32), k3 = load16(k + 48);
#pragma GCC unroll 4
        for (int h = 0; h < H; ++h) {
          __m512 a = _mm512_mul_ps(qv[h][0], k0);
          a = _mm512_fmadd_ps(qv[h][1], k1, a);
          a = _mm512_fmadd_ps(qv[h][2], k2, a);
          acc[4 * h + r] = _mm512_fmadd_ps(qv[h][3], k3, a);
        }
      }
      const __m512 sums = _mm512_mul_ps(reduce16(acc), sv);
      _mm_storeu_ps(out + 0 * n + j, _mm512_extractf32x4_ps(sums, 0));
      _mm_storeu_ps(out + 1 * n + j, _mm512_extractf32x4_ps(sums, 1));
      _mm_storeu_ps(out + 2 * n + j, _mm512_extractf32x4_ps(sums, 2));
      _mm_storeu_ps(out + 3 * n + j, _mm512_extractf32x4_ps(sums, 3));
    }
  }
  for (; j < n; ++j) {
    const T* k = rows[j] + offset;
    if (j + kRowsAhead < n) {
      const char* f = reinterpret_cast<const char*>(rows[j + kRowsAhead] + offset);
      _mm_prefetch(f, _MM_HINT_T0);
      _mm_prefetch(f + 64 * sizeof(T) - 1, _MM_HINT_T0);
    }
    const __m512 k0 = load16(k), k1 = load16(k + 16), k2 = load16(k + 32), k3 = load16(k + 48);
    __m512 acc[4] = {z, z, z, z};
    for (int h = 0; h < H; ++h) {
      __m512 a = _mm512_mul_ps(qv[h][0], k0);
      __m512 b = _mm512_mul_ps(qv[h][1], k1);
      a = _mm512_fmadd_ps(qv[h][2], k2, a);
      b = _mm512_fmadd_ps(qv[h][3], k3, b);
      acc[h] = _mm512_add_ps(a, b);
    }
    float sums[4];
    _mm_storeu_ps(sums, reduce4(acc[0], acc[1], acc[2], acc[3]));
    for (int h = 0; h < H; ++h) out[h * n + j] = sums[h] * scale;
  }
}

template <int H, typename T>
void weighted_rows_sum_heads_d64(const float* w, const T* const* rows, int64_t offset, int64_t n,
                                 float* out) {
  __m512 acc[H][4];
  for (int h = 0; h < H; ++h)
    for (int c = 0; c < 4; ++c) acc[h][c] = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; ++j) {
    const T* v = rows[j] + offset;
    if (j + kRowsAhead < n) {
      const char* f = reinterpret_cast<const char*>(rows[j + kRowsAhead] + offset);
      _mm_prefetch(f, _MM_HINT_T0);
      _mm_prefetch(f + 64 * sizeof(T) - 1, _MM_HINT_T0);
    }
    const __m512 v0 = load16(v), v1 = load16(v + 16), v2 = load16(v + 32), v3 = load16(v + 48);
    for (int h = 0; h < H; ++h) {
      const __m512 wj = _mm512_set1_ps(w[h * n + j]);
      acc[h][0] = _mm512_fmadd_ps(wj, v0, acc[h][0]);
      acc[h][1] = _mm512_fmadd_ps(wj, v1, acc[h][1]);
      acc[h][2] = _mm512_fmadd_ps(wj, v2, acc[h][2]);
      acc[h][3] = _mm512_fmadd_ps(wj, v3, acc[h][3]);
    }
  }
  for (int h = 0; h < H; ++h)
    for (int c = 0; c < 4; ++c) _mm512_storeu_ps(out + h * 64 + c * 16, acc[h][c]);
}

template <typename T>
void dot_rows_heads_any(const float* q, int heads, const T* const* rows, int64_t offset,
                        int64_t n, float scale, float* out) {
  switch (heads) {
    case 1: dot_rows_heads_d64<1>(q, rows, offset, n, scale, out); break;
    case 2: dot_rows_heads_d64<2>(q, rows, offset, n, scale, out); break;
    case 3: dot_rows_heads_d64<3>(q, rows, offset, n, scale, out); break;
    default: dot_rows_heads_d64<4>(q, rows, offset, n, scale, out); break;
  }
}

template <typename T>
void weighted_rows_sum_heads_any(const float* w, int heads, const T* const* rows, int64_t offset,
                                 int64_t n, float* out) {
  switch (heads) {
    case 1: weighted_rows_sum_heads_d64<1>(w, rows, offset, n, out); break;
    case 2: weighted_rows_sum_heads_d64<2>(w, rows, offset, n, out); break;
    case 3: weighted_rows_sum_heads_d64<3>(w, rows, offset, n, out); break;
    default: weighted_rows_sum_heads_d64<4>(w, rows, offset, n, out); break;
  }
}
// Any head size, one head.
template <typename T>
void dot_rows_t(const float* q, const T* const* rows, int64_t offset, int64_t n, int64_t d,
                float scale, float* out) {
  if (d == 64) return dot_rows_heads_d64<1>(q, rows, offset, n, scale, out);
  for (int64_t j = 0; j < n; ++j) {
    const T* k = rows[j] + offset;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 m = tail_mask(d - i);
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), load16(m, k + i), acc);
    }
    out[j] = _mm512_reduce_add_ps(acc) * scale;
  }
}

template <typename T>
void weighted_rows_sum_t(const float* w, const T* const* rows, int64_t offset, int64_t n,
                         int64_t d, float* out) {
  if (d == 64) return weighted_rows_sum_heads_d64<1>(w, rows, offset, n, out);
  for (int64_t i = 0; i < d; i += 16) {
    const __mmask16 k = tail_mask(d - i);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      acc = _mm512_fmadd_ps(_mm512_set1_ps(w[j]), load16(k, rows[j] + offset + i), acc);
    }
    _mm512_mask_storeu_ps(out + i, k, acc);
  }
}
}  // namespace

void dot_rows_avx512(const float* q, const float* const* rows, int64_t offset, int64_t n,
                     int64_t d, float scale, float* out) {
  dot_rows_t(q, rows, offset, n, d, scale, out);
}
void dot_rows_bf16_avx512(const float* q, const uint16_t* const* rows, int64_t offset, int64_t n,
                          int64_t d, float scale, float* out) {
  dot_rows_t(q, rows, offset, n, d, scale, out);
}
void weighted_rows_sum_avx512(const float* w, const float* const* rows, int64_t offset, int64_t n,
                              int64_t d, float* out) {
  weighted_rows_sum_t(w, rows, offset, n, d, out);
}
void weighted_rows_sum_bf16_avx512(const float* w, const uint16_t* const* rows, int64_t offset,
                                   int64_t n, int64_t d, float* out) {
  weighted_rows_sum_t(w, rows, offset, n, d, out);
}
void dot_rows_heads_d64_avx512(const float* q, int heads, const float* const* rows,
                               int64_t offset, int64_t n, float scale, float* out) {
  dot_rows_heads_any(q, heads, rows, offset, n, scale, out);
}
void dot_rows_heads_d64_avx512(const float* q, int heads, const uint16_t* const* rows,
                               int64_t offset, int64_t n, float scale, float* out) {
  dot_rows_heads_any(q, heads, rows, offset, n, scale, out);
}
void weighted_rows_sum_heads_d64_avx512(const float* w, int heads, const float* const* rows,
                                        int64_t offset, int64_t n, float* out) {
  weighted_rows_sum_heads_any(w, heads, rows, offset, n, out);
}
void weighted_rows_sum_heads_d64_avx512(const float* w, int heads, const uint16_t* const* rows,
                                        int64_t offset, int64_t n, float* out) {
  weighted_rows_sum_heads_any(w, heads, rows, offset, n, out);
}

}  // namespace loraserve::kernels::detail
