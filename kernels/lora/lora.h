// LoRA over a batch of segments with heterogeneous ranks (SGMV semantics).
//
// The batch's token rows are grouped into segments; every token of segment s
// uses adapter weights A_s [rank_s, in] and B_s [out, rank_s] with scale_s:
//   shrink:  v[t, :rank_s] = x[t] A_s^T
//   expand:  y[t]         += scale_s * v[t, :rank_s] B_s^T
// B is stored transposed (Bt = B^T, [rank, out]) so that both factors are
// `rank` rows of a hidden-sized vector: that is the unit the page pool holds
// and what expand streams. Rows of tokens outside every segment (requests
// with no adapter) are left untouched. Ranks differ per segment; nothing is
// padded to a maximum rank except the per-token scratch `v`.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace loraserve::kernels {

struct LoraSegment {
  int32_t begin = 0;          // first token row
  int32_t end = 0;            // one past the last token row
  int32_t rank = 0;
  float scale = 1.0f;         // lora_alpha / rank (or / sqrt(rank) with rsLoRA)
  const float* a = nullptr;   // [rank, in_dim]
  const float* bt = nullptr;  // [rank, out_dim]  (B transposed)
};

struct LoraShrinkParams {
  const float* x = nullptr;   // [num_tokens, x_stride], first in_dim columns used
  int64_t x_stride = 0;
  float* v = nullptr;         // [num_tokens, v_stride], v_stride >= max rank
  int64_t v_stride = 0;
  int64_t in_dim = 0;
  int64_t num_tokens = 0;
  const LoraSegment* segments = nullptr;
  int32_t num_segments = 0;
};

Status lora_shrink_ref(const LoraShrinkParams& p);

struct LoraExpandParams {
  const float* v = nullptr;   // [num_tokens, v_stride]
  int64_t v_stride = 0;
  float* y = nullptr;         // [num_tokens, y_stride], first out_dim columns updated (+=)
  int64_t y_stride = 0;
  int64_t out_dim = 0;
  int64_t num_tokens = 0;
  const LoraSegment* segments = nullptr;
  int32_t num_segments = 0;
};

Status lora_expand_ref(const LoraExpandParams& p);

// Checks segments: ordered, non-overlapping, inside [0, num_tokens), rank > 0
// and <= max_rank, weights present. Shared by every backend's launcher.
Status validate_lora_segments(const LoraSegment* segments, int32_t num_segments,
                              int64_t num_tokens, int64_t max_rank);

}  // namespace loraserve::kernels
