// The cpu-bf16 backend's attention: attention_ref's math over the paged KV
// cache (scores, softmax with the maximum subtracted, weighted sum of V
// rows), with each step on SIMD (kernels/gemm/gemm_bf16.h), the K/V row
// addresses of a token's sequence looked up once for all its heads, and
// each row read once for the query heads of its KV head (GQA). The
// cache holds f32 rows or bf16 rows (widened exactly as they are read). The
// caller splits the tokens between threads.
#include <algorithm>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/gemm/gemm_bf16.h"

namespace loraserve::kernels {

template <typename KvT>
void attention_cpu_tokens(const AttentionParamsOver<KvT>& p, int isa_int, int64_t t_begin,
                          int64_t t_end) {
  const CpuIsa isa = static_cast<CpuIsa>(isa_int);
  const int64_t d = p.head_dim;
  const int64_t group = p.num_q_heads / p.num_kv_heads;
  const int64_t q_dim = p.num_q_heads * d;
  std::vector<const KvT*> k_rows, v_rows;
  std::vector<float> scores;                                 // [group][n]
  std::vector<float> acc(static_cast<size_t>(group * d));   // [group][d]
  std::vector<float> inv(static_cast<size_t>(group));       // 1 / softmax denominators
  for (int64_t t = t_begin; t < t_end; ++t) {
    const int32_t seq = p.token_seq[t];
    const int64_t n = static_cast<int64_t>(p.positions[t]) + 1;
    k_rows.resize(static_cast<size_t>(n));
    v_rows.resize(static_cast<size_t>(n));
    scores.resize(static_cast<size_t>(group * n));
    for (int32_t j = 0; j < n; ++j) {
      k_rows[j] = p.kv.k_row(seq, j);
      v_rows[j] = p.kv.v_row(seq, j);
    }
    // The q heads of one KV head together: each K/V row is read once for
    // the group (kernels/gemm/gemm_bf16.h, dot_rows_heads).
    for (int64_t g = 0; g < p.num_kv_heads; ++g) {
      const int64_t off = t * q_dim + g * group * d;
      const int heads = static_cast<int>(group);
      dot_rows_heads(p.q + off, heads, k_rows.data(), g * d, n, d, p.scale, scores.data(), isa);
      for (int64_t h = 0; h < group; ++h) {
        inv[h] = 1.0f / softmax_exp_f32(scores.data() + h * n, n, isa);
      }
      weighted_rows_sum_heads(scores.data(), heads, v_rows.data(), g * d, n, d, acc.data(), isa);
      // `acc` is a scratch copy, so `out` may alias `q`.
      for (int64_t h = 0; h < group; ++h) {
        for (int64_t i = 0; i < d; ++i) p.out[off + h * d + i] = acc[h * d + i] * inv[h];
      }
    }
  }
}

template void attention_cpu_tokens(const AttentionParamsOver<float>&, int, int64_t, int64_t);
template void attention_cpu_tokens(const AttentionParamsOver<uint16_t>&, int, int64_t, int64_t);

Status kv_append_bf16kv_cpu(const KvAppendBf16KvParams& p, int isa_int) {
  LS_RETURN_IF_ERROR(validate_kv_append(p));
  const CpuIsa isa = static_cast<CpuIsa>(isa_int);
  const int64_t kv_dim = p.kv.kv_dim;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int32_t seq = p.token_seq[t];
    const int32_t pos = p.positions[t];
    f32_to_bf16_rows(p.k + t * kv_dim, p.kv.k_row(seq, pos), kv_dim, isa);
    f32_to_bf16_rows(p.v + t * kv_dim, p.kv.v_row(seq, pos), kv_dim, isa);
  }
  return ok_status();
}

}  // namespace loraserve::kernels
