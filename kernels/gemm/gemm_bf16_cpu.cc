// gemm_bf16: run-time dispatch, argument checks, and the scalar kernel.
#include <algorithm>
#include <cmath>
#include <string>

#include "common/dtype.h"
#include "kernels/gemm/gemm_bf16.h"
#include "kernels/gemm/gemm_bf16_panels.h"

namespace loraserve::kernels {
namespace {

bool os_saves_avx512() {
#if defined(__x86_64__)
  // XCR0: SSE, AVX and the three AVX-512 state components enabled by the OS.
  uint32_t eax, edx;
  __asm__("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (eax & 0xe6) == 0xe6;
#else
  return false;
#endif
}

void gemm_bf16_scalar(const GemmBf16Params& p) {
  const int64_t ldx = p.ldx ? p.ldx : p.k;
  const int64_t ldy = p.ldy ? p.ldy : p.n;
  const int64_t n_end = p.n_end < 0 ? p.n : p.n_end;
  for (int64_t i = 0; i < p.m; ++i) {
    const float* x = p.x + i * ldx;
    for (int64_t j = p.n_begin; j < n_end; ++j) {
      const uint16_t* w = p.w + j * p.k;
      float s = 0.0f;
      for (int64_t t = 0; t < p.k; ++t) s += x[t] * bf16_to_f32(w[t]);
      float* out = p.y + i * ldy + j;
      *out = p.accumulate ? *out + s : s;
    }
  }
}

}  // namespace

CpuIsa detect_cpu_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && os_saves_avx512();
  if (avx512 && __builtin_cpu_supports("avx512bf16")) return CpuIsa::kAvx512Bf16;
  if (avx512) return CpuIsa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
#endif
  return CpuIsa::kScalar;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512Bf16: return "avx512bf16";
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kScalar: return "scalar";
  }
  return "?";
}

namespace {
constexpr CpuIsa kAllIsas[] = {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16};
}  // namespace

std::vector<CpuIsa> runnable_cpu_isas() {
  std::vector<CpuIsa> out;
  for (CpuIsa isa : kAllIsas) {
    if (static_cast<int>(isa) <= static_cast<int>(detect_cpu_isa())) out.push_back(isa);
  }
  return out;
}

StatusOr<CpuIsa> parse_cpu_isa(const std::string& name) {
  const CpuIsa best = detect_cpu_isa();
  if (name == "auto" || name.empty()) return best;
  for (CpuIsa isa : kAllIsas) {
    if (name != cpu_isa_name(isa)) continue;
    if (static_cast<int>(isa) > static_cast<int>(best)) {
      return invalid_argument(std::string("this CPU cannot run the ") + name +
                              " kernels (best: " + cpu_isa_name(best) + ")");
    }
    return isa;
  }
  return invalid_argument("unknown instruction set '" + name +
                          "' (expected auto, avx512bf16, avx512, avx2 or scalar)");
}

Status gemm_bf16_cpu(const GemmBf16Params& p, CpuIsa isa) {
  const int64_t n_end = p.n_end < 0 ? p.n : p.n_end;
  if (p.m < 0 || p.n <= 0 || p.k <= 0 || p.w == nullptr || p.y == nullptr ||
      p.n_begin < 0 || p.n_begin > n_end || n_end > p.n ||
      (p.ldx != 0 && p.ldx < p.k) || (p.ldy != 0 && p.ldy < p.n)) {
    return invalid_argument("gemm_bf16: bad shape or null pointer");
  }
  if (isa == CpuIsa::kAvx512Bf16 ? p.xb == nullptr : p.x == nullptr) {
    return invalid_argument(std::string("gemm_bf16: the ") + cpu_isa_name(isa) +
                            " kernel needs its x (bf16 for avx512bf16, else f32)");
  }
  if (p.w_panels) {
    if (isa != CpuIsa::kAvx512Bf16) {
      return invalid_argument(std::string("gemm_bf16: panel-packed weights need the avx512bf16 "
                                          "kernel, not ") + cpu_isa_name(isa));
    }
    if (p.k % 2 != 0 || p.n_begin % kBf16PanelCols != 0 ||
        (n_end != p.n && n_end % kBf16PanelCols != 0)) {
      return invalid_argument("gemm_bf16: panel-packed weights need an even k and a column range "
                              "on panel (16-column) boundaries");
    }
  }
  if (p.m == 0 || p.n_begin == n_end) return ok_status();
  if (p.w_panels) {
    detail::gemm_bf16_panels_avx512bf16(p);
    return ok_status();
  }
  switch (isa) {
    case CpuIsa::kAvx512Bf16: detail::gemm_bf16_avx512bf16(p); break;
    case CpuIsa::kAvx512: detail::gemm_bf16_avx512(p); break;
    case CpuIsa::kAvx2: detail::gemm_bf16_avx2(p); break;
    case CpuIsa::kScalar: gemm_bf16_scalar(p); break;
  }
  return ok_status();
}

void f32_to_bf16_rows(const float* src, uint16_t* dst, int64_t n, CpuIsa isa) {
  if (isa == CpuIsa::kAvx512Bf16) {
    detail::f32_to_bf16_avx512bf16(src, dst, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}

namespace {
inline float value(float v) { return v; }
inline float value(uint16_t v) { return bf16_to_f32(v); }

template <typename T>
float dot_t(const float* a, const T* b, int64_t n, CpuIsa isa) {
  if (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAvx512) return detail::dot_f32_avx512(a, b, n);
  if (isa == CpuIsa::kAvx2) return detail::dot_f32_avx2(a, b, n);
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * value(b[i]);
  return s;
}

template <typename T>
void axpy_t(float alpha, const T* x, float* y, int64_t n, CpuIsa isa) {
  if (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAvx512) {
    detail::axpy_f32_avx512(alpha, x, y, n);
    return;
  }
  if (isa == CpuIsa::kAvx2) {
    detail::axpy_f32_avx2(alpha, x, y, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * value(x[i]);
}
}  // namespace

float dot_f32(const float* a, const float* b, int64_t n, CpuIsa isa) { return dot_t(a, b, n, isa); }
float dot_f32(const float* a, const uint16_t* b, int64_t n, CpuIsa isa) { return dot_t(a, b, n, isa); }
void axpy_f32(float alpha, const float* x, float* y, int64_t n, CpuIsa isa) {
  axpy_t(alpha, x, y, n, isa);
}
void axpy_f32(float alpha, const uint16_t* x, float* y, int64_t n, CpuIsa isa) {
  axpy_t(alpha, x, y, n, isa);
}

RowSoftmaxStats row_softmax_stats(const float* x, int64_t n, CpuIsa isa) {
  RowSoftmaxStats st;
  if (n <= 0) return st;
  if (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAvx512) {
    detail::max_argmax_avx512(x, n, &st.max, &st.argmax, &st.finite);
    if (st.finite) st.log_sum_exp = std::log(detail::sum_exp_avx512(x, n, st.max));
    return st;
  }
  st.max = x[0];
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      st.finite = false;
      return st;
    }
    if (x[i] > st.max) {
      st.max = x[i];
      st.argmax = i;
    }
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - st.max);
  st.log_sum_exp = std::log(sum);
  return st;
}

void silu_mul_f32(const float* gate, const float* up, float* out, int64_t n, CpuIsa isa) {
  if (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAvx512) {
    detail::silu_mul_avx512(gate, up, out, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void dot_rows_f32(const float* q, const float* const* rows, int64_t offset, int64_t n, int64_t d,
                  float scale, float* out, CpuIsa isa) {
  if (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAvx512) {
    detail::dot_rows_avx512(q, rows, offset, n, d, scale, out);
    return;
  }
  for (int64_t j = 0; j < n; ++j) out[j] = dot_f32(q, rows[j] + offset, d, isa) * scale;
}

float softmax_exp_f32(float* s, int64_t n, CpuIsa isa) {
  if (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAvx512) return detail::softmax_exp_avx512(s, n);
  float m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, s[j]);
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - m);
    sum += s[j];
  }
  return sum;
}

void weighted_rows_sum_f32(const float* w, const float* const* rows, int64_t offset, int64_t n,
                           int64_t d, float* out, CpuIsa isa) {
  if (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAvx512) {
    detail::weighted_rows_sum_avx512(w, rows, offset, n, d, out);
    return;
  }
  std::fill(out, out + d, 0.0f);
  for (int64_t j = 0; j < n; ++j) axpy_f32(w[j], rows[j] + offset, out, d, isa);
}

void dot_rows_bf16(const float* q, const uint16_t* const* rows, int64_t offset, int64_t n,
                   int64_t d, float scale, float* out, CpuIsa isa) {
  if (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAvx512) {
    detail::dot_rows_bf16_avx512(q, rows, offset, n, d, scale, out);
    return;
  }
  for (int64_t j = 0; j < n; ++j) {
    const uint16_t* k = rows[j] + offset;
    float s = 0.0f;
    for (int64_t i = 0; i < d; ++i) s += q[i] * bf16_to_f32(k[i]);
    out[j] = s * scale;
  }
}

void weighted_rows_sum_bf16(const float* w, const uint16_t* const* rows, int64_t offset,
                            int64_t n, int64_t d, float* out, CpuIsa isa) {
  if (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAvx512) {
    detail::weighted_rows_sum_bf16_avx512(w, rows, offset, n, d, out);
    return;
  }
  std::fill(out, out + d, 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    const uint16_t* v = rows[j] + offset;
    for (int64_t i = 0; i < d; ++i) out[i] += w[j] * bf16_to_f32(v[i]);
  }
}

namespace {
void dot_rows_any(const float* q, const float* const* rows, int64_t off, int64_t n, int64_t d,
                  float scale, float* out, CpuIsa isa) {
  dot_rows_f32(q, rows, off, n, d, scale, out, isa);
}
void dot_rows_any(const float* q, const uint16_t* const* rows, int64_t off, int64_t n, int64_t d,
                  float scale, float* out, CpuIsa isa) {
  dot_rows_bf16(q, rows, off, n, d, scale, out, isa);
}
void weighted_rows_sum_any(const float* w, const float* const* rows, int64_t off, int64_t n,
                           int64_t d, float* out, CpuIsa isa) {
  weighted_rows_sum_f32(w, rows, off, n, d, out, isa);
}
void weighted_rows_sum_any(const float* w, const uint16_t* const* rows, int64_t off, int64_t n,
                           int64_t d, float* out, CpuIsa isa) {
  weighted_rows_sum_bf16(w, rows, off, n, d, out, isa);
}

bool grouped_fast_path(int64_t d, CpuIsa isa) {
  return d == 64 && (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAvx512);
}

template <typename T>
void dot_rows_heads_t(const float* q, int heads, const T* const* rows, int64_t offset, int64_t n,
                      int64_t d, float scale, float* out, CpuIsa isa) {
  for (int h0 = 0; h0 < heads; h0 += 4) {
    const int hs = heads - h0 < 4 ? heads - h0 : 4;
    if (grouped_fast_path(d, isa)) {
      detail::dot_rows_heads_d64_avx512(q + h0 * d, hs, rows, offset, n, scale, out + h0 * n);
      continue;
    }
    for (int h = h0; h < h0 + hs; ++h) {
      dot_rows_any(q + h * d, rows, offset, n, d, scale, out + h * n, isa);
    }
  }
}

template <typename T>
void weighted_rows_sum_heads_t(const float* w, int heads, const T* const* rows, int64_t offset,
                               int64_t n, int64_t d, float* out, CpuIsa isa) {
  for (int h0 = 0; h0 < heads; h0 += 4) {
    const int hs = heads - h0 < 4 ? heads - h0 : 4;
    if (grouped_fast_path(d, isa)) {
      detail::weighted_rows_sum_heads_d64_avx512(w + h0 * n, hs, rows, offset, n, out + h0 * d);
      continue;
    }
    for (int h = h0; h < h0 + hs; ++h) {
      weighted_rows_sum_any(w + h * n, rows, offset, n, d, out + h * d, isa);
    }
  }
}
}  // namespace

void dot_rows_heads(const float* q, int heads, const float* const* rows, int64_t offset,
                    int64_t n, int64_t d, float scale, float* out, CpuIsa isa) {
  dot_rows_heads_t(q, heads, rows, offset, n, d, scale, out, isa);
}
void dot_rows_heads(const float* q, int heads, const uint16_t* const* rows, int64_t offset,
                    int64_t n, int64_t d, float scale, float* out, CpuIsa isa) {
  dot_rows_heads_t(q, heads, rows, offset, n, d, scale, out, isa);
}
void weighted_rows_sum_heads(const float* w, int heads, const float* const* rows, int64_t offset,
                             int64_t n, int64_t d, float* out, CpuIsa isa) {
  weighted_rows_sum_heads_t(w, heads, rows, offset, n, d, out, isa);
}
void weighted_rows_sum_heads(const float* w, int heads, const uint16_t* const* rows,
                             int64_t offset, int64_t n, int64_t d, float* out, CpuIsa isa) {
  weighted_rows_sum_heads_t(w, heads, rows, offset, n, d, out, isa);
}

}  // namespace loraserve::kernels
