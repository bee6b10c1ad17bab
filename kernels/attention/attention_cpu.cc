// The cpu-bf16 backend's attention: attention_ref's math over the f32 paged
// KV cache, with the dot products and the weighted sum of V rows on SIMD
// (kernels/gemm/gemm_bf16.h's dot_f32 / axpy_f32) and the tokens split
// between threads by the caller.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/gemm/gemm_bf16.h"

namespace loraserve::kernels {

void attention_cpu_tokens(const AttentionParams& p, int isa_int, int64_t t_begin, int64_t t_end) {
  const CpuIsa isa = static_cast<CpuIsa>(isa_int);
  const int64_t d = p.head_dim;
  const int64_t group = p.num_q_heads / p.num_kv_heads;
  const int64_t q_dim = p.num_q_heads * d;
  std::vector<float> scores;
  std::vector<float> acc(static_cast<size_t>(d));
  for (int64_t t = t_begin; t < t_end; ++t) {
    const int32_t seq = p.token_seq[t];
    const int32_t last = p.positions[t];
    scores.resize(static_cast<size_t>(last) + 1);
    for (int64_t h = 0; h < p.num_q_heads; ++h) {
      const int64_t off = t * q_dim + h * d;
      const int64_t kv_off = (h / group) * d;
      const float* q = p.q + off;
      float max_score = -INFINITY;
      for (int32_t j = 0; j <= last; ++j) {
        scores[j] = dot_f32(q, p.kv.k_row(seq, j) + kv_off, d, isa) * p.scale;
        max_score = std::max(max_score, scores[j]);
      }
      float denom = 0.0f;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int32_t j = 0; j <= last; ++j) {
        const float w = std::exp(scores[j] - max_score);
        denom += w;
        axpy_f32(w, p.kv.v_row(seq, j) + kv_off, acc.data(), d, isa);
      }
      // `acc` is a scratch copy, so `out` may alias `q`.
      const float inv = 1.0f / denom;
      for (int64_t i = 0; i < d; ++i) p.out[off + i] = acc[i] * inv;
    }
  }
}

}  // namespace loraserve::kernels
