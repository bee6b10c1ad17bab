// The cpu-bf16 backend's dense layer: bf16 weights as stored in the
// checkpoint (mmapped, never converted), f32 activations, f32 accumulation:
//   y[m, n] (+)= x[m, k] W[n, k]^T      for n in [n_begin, n_end)
// Threads split the output columns: each call computes one range, so the
// caller's thread pool decides the split and every weight row is read by
// exactly one thread.
//
// One kernel per instruction set, chosen at run time (the binary runs on
// any x86-64; nothing is built with -march=native):
//   kAvx512Bf16  x rounded to bf16 once per call (GemmBf16Params::xb) and
//                VDPBF16PS: two multiply-adds per lane per instruction, the
//                only path fast enough for prefill and large batches. Its
//                products are exact; the one extra rounding is x's.
//   kAvx512      weights widened to f32 (a shift), FMA with f32 x.
//   kAvx2        the same, 8 lanes.
//   kScalar      the same, one lane (any CPU; also the oracle's twin).
// gemm_naive_ref over the widened weights is the independent check.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/gemm/gemm_bf16_params.h"

namespace loraserve::kernels {

enum class CpuIsa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Bf16 = 3 };

// The best kernel this CPU can run (cpuid and the OS's register state).
CpuIsa detect_cpu_isa();
const char* cpu_isa_name(CpuIsa isa);
// "auto" (detect), "avx512bf16", "avx512", "avx2", "scalar"; refuses a set
// this CPU lacks.
StatusOr<CpuIsa> parse_cpu_isa(const std::string& name);
// Every kernel this CPU can run, scalar first (what the tests sweep).
std::vector<CpuIsa> runnable_cpu_isas();


Status gemm_bf16_cpu(const GemmBf16Params& p, CpuIsa isa);

// dst[i] = bf16(src[i]) (round to nearest even), vectorised where the CPU can.
void f32_to_bf16_rows(const float* src, uint16_t* dst, int64_t n, CpuIsa isa);

// The f32 vector ops the cpu-bf16 backend's LoRA and attention use; the
// uint16_t forms read b / x as bf16 (a bf16 LoRA image), widened exactly.
float dot_f32(const float* a, const float* b, int64_t n, CpuIsa isa);
float dot_f32(const float* a, const uint16_t* b, int64_t n, CpuIsa isa);
void axpy_f32(float alpha, const float* x, float* y, int64_t n, CpuIsa isa);
void axpy_f32(float alpha, const uint16_t* x, float* y, int64_t n, CpuIsa isa);

// Row statistics for greedy sampling over a vocab-long row: whether every
// value is finite, the first index of the maximum, and log(sum(exp(x - max))).
struct RowSoftmaxStats {
  bool finite = true;
  int64_t argmax = 0;
  float max = 0.0f;
  double log_sum_exp = 0.0;  // of x - max
};
RowSoftmaxStats row_softmax_stats(const float* x, int64_t n, CpuIsa isa);

// out[i] = silu(gate[i]) * up[i] with silu(g) = g / (1 + exp(-g)).
void silu_mul_f32(const float* gate, const float* up, float* out, int64_t n, CpuIsa isa);

// Attention over KV rows that are not contiguous (paged): out[j] = scale *
// dot(q, rows[j] + offset) for j < n; softmax_exp turns scores into
// exp(s - max) in place and returns their sum; weighted_rows_sum sets
// out = sum_j w[j] * (rows[j] + offset), d elements each.
void dot_rows_f32(const float* q, const float* const* rows, int64_t offset, int64_t n, int64_t d,
                  float scale, float* out, CpuIsa isa);
float softmax_exp_f32(float* s, int64_t n, CpuIsa isa);
void weighted_rows_sum_f32(const float* w, const float* const* rows, int64_t offset, int64_t n,
                           int64_t d, float* out, CpuIsa isa);
// The same over bf16 rows (a bf16 KV cache), each element widened exactly.
void dot_rows_bf16(const float* q, const uint16_t* const* rows, int64_t offset, int64_t n,
                   int64_t d, float scale, float* out, CpuIsa isa);
void weighted_rows_sum_bf16(const float* w, const uint16_t* const* rows, int64_t offset,
                            int64_t n, int64_t d, float* out, CpuIsa isa);

// GQA: the same for `heads` consecutive query heads (q + h * d) that share
// the rows: out[h * n + j] for the scores, out[h * d + i] for the weighted
// sums of w[h * n + j]. With d = 64 on AVX-512 each row is read once for
// up to four heads; elsewhere head by head.
void dot_rows_heads(const float* q, int heads, const float* const* rows, int64_t offset,
                    int64_t n, int64_t d, float scale, float* out, CpuIsa isa);
void dot_rows_heads(const float* q, int heads, const uint16_t* const* rows, int64_t offset,
                    int64_t n, int64_t d, float scale, float* out, CpuIsa isa);
void weighted_rows_sum_heads(const float* w, int heads, const float* const* rows, int64_t offset,
                             int64_t n, int64_t d, float* out, CpuIsa isa);
void weighted_rows_sum_heads(const float* w, int heads, const uint16_t* const* rows,
                             int64_t offset, int64_t n, int64_t d, float* out, CpuIsa isa);

// Per-ISA entry points (gemm_bf16_<isa>.cc); callers use gemm_bf16_cpu.
namespace detail {
void gemm_bf16_avx512bf16(const GemmBf16Params& p);
void gemm_bf16_panels_avx512bf16(const GemmBf16Params& p);  // p.w_panels
void gemm_bf16_avx512(const GemmBf16Params& p);
void gemm_bf16_avx2(const GemmBf16Params& p);
void f32_to_bf16_avx512bf16(const float* src, uint16_t* dst, int64_t n);
float dot_f32_avx512(const float* a, const float* b, int64_t n);
float dot_f32_avx512(const float* a, const uint16_t* b, int64_t n);
void axpy_f32_avx512(float alpha, const float* x, float* y, int64_t n);
void axpy_f32_avx512(float alpha, const uint16_t* x, float* y, int64_t n);
float dot_f32_avx2(const float* a, const float* b, int64_t n);
float dot_f32_avx2(const float* a, const uint16_t* b, int64_t n);
void axpy_f32_avx2(float alpha, const float* x, float* y, int64_t n);
void axpy_f32_avx2(float alpha, const uint16_t* x, float* y, int64_t n);
// max and first argmax (finite inputs), sum of exp(x - max) in f32 lanes.
void max_argmax_avx512(const float* x, int64_t n, float* max, int64_t* argmax, bool* finite);
double sum_exp_avx512(const float* x, int64_t n, float shift);
void silu_mul_avx512(const float* gate, const float* up, float* out, int64_t n);
void dot_rows_avx512(const float* q, const float* const* rows, int64_t offset, int64_t n,
                     int64_t d, float scale, float* out);
float softmax_exp_avx512(float* s, int64_t n);
void weighted_rows_sum_avx512(const float* w, const float* const* rows, int64_t offset, int64_t n,
                              int64_t d, float* out);
void dot_rows_bf16_avx512(const float* q, const uint16_t* const* rows, int64_t offset, int64_t n,
                          int64_t d, float scale, float* out);
void weighted_rows_sum_bf16_avx512(const float* w, const uint16_t* const* rows, int64_t offset,
                                   int64_t n, int64_t d, float* out);
// GQA with head_dim 64: `heads` (1..4) consecutive query heads that share
// the K/V rows, each row read once for all of them. dot: out[h * n + j] =
// scale * dot(q + 64 h, rows[j] + offset); weighted sum: out[64 h + i] =
// sum_j w[h * n + j] * (rows[j] + offset)[i]. The per-head functions above
// give the same sums up to the order of additions.
void dot_rows_heads_d64_avx512(const float* q, int heads, const float* const* rows,
                               int64_t offset, int64_t n, float scale, float* out);
void dot_rows_heads_d64_avx512(const float* q, int heads, const uint16_t* const* rows,
                               int64_t offset, int64_t n, float scale, float* out);
void weighted_rows_sum_heads_d64_avx512(const float* w, int heads, const float* const* rows,
                                        int64_t offset, int64_t n, float* out);
void weighted_rows_sum_heads_d64_avx512(const float* w, int heads, const uint16_t* const* rows,
                                        int64_t offset, int64_t n, float* out);
}  // namespace detail

}  // namespace loraserve::kernels
