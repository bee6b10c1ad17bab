// gemm_bf16 on AVX2 + FMA (kAvx2): weights widened to f32, 8 lanes, for
// x86-64 CPUs without AVX-512. Built with -mavx2 -mfma and called only
// after detect_cpu_isa(); it includes no library headers.
#include <immintrin.h>

#include <cstdint>

#include "kernels/gemm/gemm_bf16_blocking.h"

namespace loraserve::kernels::detail {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256 widen(const uint16_t* w) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(
      _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w))), 16));
}

// 16 ymm registers: MR*NR accumulators + NR weights + one x.
template <int MR, int NR>
void tile_fma(const GemmBf16Params& p, int64_t m0, int64_t n0, int64_t k0, int64_t kc,
              bool accumulate) {
  const int64_t ldx = p.ldx ? p.ldx : p.k;
  const float* x[MR];
  const uint16_t* w[NR];
  for (int i = 0; i < MR; ++i) x[i] = p.x + (m0 + i) * ldx + k0;
  for (int j = 0; j < NR; ++j) w[j] = p.w + (n0 + j) * p.k + k0;
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t kk = 0;
  for (; kk + 8 <= kc; kk += 8) {
    __m256 wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = widen(w[j] + kk);
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_loadu_ps(x[i] + kk);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  const int64_t ldy = p.ldy ? p.ldy : p.n;
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t t = kk; t < kc; ++t) {  // the tail, in order
        uint32_t bits = static_cast<uint32_t>(w[j][t]) << 16;
        float wf;
        __builtin_memcpy(&wf, &bits, 4);
        s += x[i][t] * wf;
      }
      float* out = p.y + (m0 + i) * ldy + n0 + j;
      *out = accumulate ? *out + s : s;
    }
  }
}

// The shared switch covers MR 1..4 and NR 1..6; this tile uses MR <= 2 and
// NR <= 4 (8 + 4 + 1 registers).
template <int MR, int NR>
void tile_small(const GemmBf16Params& p, int64_t m0, int64_t n0, int64_t k0, int64_t kc,
                bool accumulate) {
  if constexpr (MR <= 2 && NR <= 4) tile_fma<MR, NR>(p, m0, n0, k0, kc, accumulate);
}

struct FmaTile {
  static constexpr int kMR = 2, kNR = 4;
  static void run(int mr, int nr, const GemmBf16Params& p, int64_t m0, int64_t n0, int64_t k0,
                  int64_t kc, bool accumulate) {
    LS_GEMM_TILE_SWITCH(tile_small, mr, nr, p, m0, n0, k0, kc, accumulate)
  }
};

}  // namespace

void gemm_bf16_avx2(const GemmBf16Params& p) { gemm_bf16_blocked<FmaTile>(p); }

namespace {
// 8 values of an f32 or bf16 vector as f32 (bf16 widened exactly), and one.
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) { return widen(p); }
inline float load1(const float* p) { return *p; }
inline float load1(const uint16_t* p) {
  const uint32_t bits = static_cast<uint32_t>(*p) << 16;
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename T>
float dot_t(const float* a, const T* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load8(b + i + 8), acc1);
  }
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * load1(b + i);
  return s;
}

template <typename T>
void axpy_t(float alpha, const T* x, float* y, int64_t n) {
  const __m256 a = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, load8(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += alpha * load1(x + i);
}
}  // namespace

float dot_f32_avx2(const float* a, const float* b, int64_t n) { return dot_t(a, b, n); }
float dot_f32_avx2(const float* a, const uint16_t* b, int64_t n) { return dot_t(a, b, n); }
void axpy_f32_avx2(float alpha, const float* x, float* y, int64_t n) { axpy_t(alpha, x, y, n); }
void axpy_f32_avx2(float alpha, const uint16_t* x, float* y, int64_t n) { axpy_t(alpha, x, y, n); }

}  // namespace loraserve::kernels::detail
