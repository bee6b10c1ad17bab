#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"

namespace loraserve::kernels {

namespace {

template <typename KvT>
Status validate_view(const char* op, const PagedKv<KvT>& kv) {
  const std::string prefix = std::string(op) + ": ";
  if (!kv.pool || !kv.block_indptr || !kv.page_ids) {
    return invalid_argument(prefix + "null pool, block_indptr or page_ids in the KV view");
  }
  if (kv.page_tokens <= 0 || kv.kv_dim <= 0 || kv.num_layers <= 0 || kv.num_seqs <= 0) {
    return invalid_argument(prefix + "page_tokens, kv_dim, num_layers and num_seqs must be > 0");
  }
  if (kv.layer < 0 || kv.layer >= kv.num_layers) {
    return invalid_argument(prefix + "layer " + std::to_string(kv.layer) + " outside [0, " +
                            std::to_string(kv.num_layers) + ")");
  }
  if (kv.page_stride < 2 * static_cast<int64_t>(kv.page_tokens) * kv.kv_dim) {
    return invalid_argument(prefix + "page_stride smaller than 2 * page_tokens * kv_dim");
  }
  return ok_status();
}

// Shared by append and attention: the token must name a sequence of the view and a position
// inside the pages that sequence owns.
template <typename KvT>
Status validate_token(const char* op, const PagedKv<KvT>& kv, int64_t t, int32_t seq,
                      int32_t pos) {
  const std::string where = std::string(op) + ": token " + std::to_string(t);
  if (seq < 0 || seq >= kv.num_seqs) {
    return invalid_argument(where + " names sequence " + std::to_string(seq) + " outside [0, " +
                            std::to_string(kv.num_seqs) + ")");
  }
  if (pos < 0) return invalid_argument(where + " has negative position");
  if (pos >= kv.capacity_tokens(seq)) {
    return out_of_range(where + " at position " + std::to_string(pos) + " is beyond the " +
                        std::to_string(kv.capacity_tokens(seq)) + " tokens sequence " +
                        std::to_string(seq) + " owns");
  }
  return ok_status();
}

template <typename KvT>
Status validate_tokens(const char* op, const PagedKv<KvT>& kv, const int32_t* token_seq,
                       const int32_t* positions, int64_t num_tokens) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    LS_RETURN_IF_ERROR(validate_token(op, kv, t, token_seq[t], positions[t]));
  }
  return ok_status();
}

template <typename KvT>
Status validate_heads(const AttentionParamsOver<KvT>& p) {
  if (p.num_q_heads <= 0 || p.num_kv_heads <= 0 || p.head_dim <= 0) {
    return invalid_argument("attention: num_q_heads, num_kv_heads and head_dim must be > 0");
  }
  if (p.num_q_heads % p.num_kv_heads != 0) {
    return invalid_argument("attention: num_kv_heads " + std::to_string(p.num_kv_heads) +
                            " does not divide num_q_heads " + std::to_string(p.num_q_heads));
  }
  if (p.kv.kv_dim != p.num_kv_heads * p.head_dim) {
    return invalid_argument("attention: kv.kv_dim " + std::to_string(p.kv.kv_dim) +
                            " != num_kv_heads * head_dim");
  }
  // A zero scale is the struct's unset default; attending uniformly is never what was meant.
  if (!(p.scale > 0.0f) || !std::isfinite(p.scale)) {
    return invalid_argument("attention: scale must be finite and > 0");
  }
  return ok_status();
}

}  // namespace

template <typename KvT>
Status validate_kv_append(const KvAppendParamsOver<KvT>& p) {
  if (p.num_tokens < 0) return invalid_argument("kv_append: num_tokens < 0");
  if (p.num_tokens == 0) return ok_status();
  if (!p.k || !p.v || !p.token_seq || !p.positions) {
    return invalid_argument("kv_append: null k, v, token_seq or positions");
  }
  LS_RETURN_IF_ERROR(validate_view("kv_append", p.kv));
  return validate_tokens("kv_append", p.kv, p.token_seq, p.positions, p.num_tokens);
}

template <typename KvT>
Status validate_attention(const AttentionParamsOver<KvT>& p) {
  if (p.num_tokens < 0) return invalid_argument("attention: num_tokens < 0");
  LS_RETURN_IF_ERROR(validate_heads(p));
  if (p.num_tokens == 0) return ok_status();
  if (!p.q || !p.out || !p.token_seq || !p.positions) {
    return invalid_argument("attention: null q, out, token_seq or positions");
  }
  LS_RETURN_IF_ERROR(validate_view("attention", p.kv));
  return validate_tokens("attention", p.kv, p.token_seq, p.positions, p.num_tokens);
}

template Status validate_attention(const AttentionParamsOver<float>&);
template Status validate_attention(const AttentionParamsOver<uint16_t>&);
template Status validate_kv_append(const KvAppendParamsOver<float>&);
template Status validate_kv_append(const KvAppendParamsOver<uint16_t>&);

namespace {

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// One (token, q head): softmax over positions 0..last of the sequence, with the running max
// subtracted before exp so large scores cannot overflow.
void attend_one_head(const AttentionParams& p, int32_t seq, int32_t last, int64_t kv_head,
                     const float* q, float* out, std::vector<float>& scores,
                     std::vector<float>& acc) {
  const int64_t d = p.head_dim;
  const int64_t kv_off = kv_head * d;
  scores.resize(static_cast<size_t>(last) + 1);
  float max_score = -INFINITY;
  for (int32_t j = 0; j <= last; ++j) {
    scores[j] = dot(q, p.kv.k_row(seq, j) + kv_off, d) * p.scale;
    max_score = std::max(max_score, scores[j]);
  }
  float denom = 0.0f;
  std::fill(acc.begin(), acc.end(), 0.0f);
  for (int32_t j = 0; j <= last; ++j) {
    const float w = std::exp(scores[j] - max_score);
    denom += w;
    const float* v = p.kv.v_row(seq, j) + kv_off;
    for (int64_t i = 0; i < d; ++i) acc[i] += w * v[i];
  }
  // `acc` is a scratch copy, so `out` may alias `q`.
  for (int64_t i = 0; i < d; ++i) out[i] = acc[i] / denom;
}

}  // namespace

Status kv_append_ref(const KvAppendParams& p) {
  LS_RETURN_IF_ERROR(validate_kv_append(p));
  const int64_t kv_dim = p.kv.kv_dim;
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int32_t seq = p.token_seq[t];
    const int32_t pos = p.positions[t];
    std::copy(p.k + t * kv_dim, p.k + (t + 1) * kv_dim, p.kv.k_row(seq, pos));
    std::copy(p.v + t * kv_dim, p.v + (t + 1) * kv_dim, p.kv.v_row(seq, pos));
  }
  return ok_status();
}

Status attention_ref(const AttentionParams& p) {
  LS_RETURN_IF_ERROR(validate_attention(p));
  const int64_t group = p.num_q_heads / p.num_kv_heads;
  const int64_t q_dim = p.num_q_heads * p.head_dim;
  std::vector<float> scores;
  std::vector<float> acc(static_cast<size_t>(p.head_dim));
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    for (int64_t h = 0; h < p.num_q_heads; ++h) {
      const int64_t off = t * q_dim + h * p.head_dim;
      attend_one_head(p, p.token_seq[t], p.positions[t], h / group, p.q + off, p.out + off, scores,
                      acc);
    }
  }
  return ok_status();
}

}  // namespace loraserve::kernels
