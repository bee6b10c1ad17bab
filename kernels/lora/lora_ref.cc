#include <cblas.h>

#include <climits>
#include <string>

#include "kernels/lora/lora.h"

namespace loraserve::kernels {

namespace {

Status validate_segment(const LoraSegment& s, int32_t i, int32_t prev_end, int64_t num_tokens,
                        int64_t max_rank) {
  const std::string where = "lora segment " + std::to_string(i) + ": ";
  if (s.begin < 0 || s.end < s.begin || s.end > num_tokens) {
    return invalid_argument(where + "rows [" + std::to_string(s.begin) + ", " +
                            std::to_string(s.end) + ") not inside [0, " +
                            std::to_string(num_tokens) + ")");
  }
  if (s.begin < prev_end) {
    return invalid_argument(where + "begins at row " + std::to_string(s.begin) +
                            ", before the previous segment ends at " + std::to_string(prev_end) +
                            " (segments must be ordered and disjoint)");
  }
  if (s.rank <= 0 || s.rank > max_rank) {
    return invalid_argument(where + "rank " + std::to_string(s.rank) + " outside [1, " +
                            std::to_string(max_rank) + "]");
  }
  if (!s.a || !s.bt) return invalid_argument(where + "null A or B^T weights");
  return ok_status();
}

// cblas takes int sizes; anything larger is a caller bug, not something to truncate.
bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

}  // namespace

Status validate_lora_segments(const LoraSegment* segments, int32_t num_segments, int64_t num_tokens,
                              int64_t max_rank) {
  if (num_segments < 0) return invalid_argument("lora: num_segments < 0");
  if (num_tokens < 0) return invalid_argument("lora: num_tokens < 0");
  if (num_segments > 0 && !segments) return invalid_argument("lora: null segments");
  int32_t prev_end = 0;
  for (int32_t i = 0; i < num_segments; ++i) {
    LS_RETURN_IF_ERROR(validate_segment(segments[i], i, prev_end, num_tokens, max_rank));
    prev_end = segments[i].end;
  }
  return ok_status();
}

Status lora_shrink_ref(const LoraShrinkParams& p) {
  if (p.in_dim <= 0 || p.x_stride < p.in_dim || p.v_stride <= 0) {
    return invalid_argument("lora_shrink: need in_dim > 0, x_stride >= in_dim, v_stride > 0");
  }
  if (!fits_int(p.x_stride) || !fits_int(p.v_stride) || !fits_int(p.num_tokens)) {
    return invalid_argument("lora_shrink: sizes exceed the BLAS int range");
  }
  // v_stride is the widest rank a token row of `v` can hold.
  LS_RETURN_IF_ERROR(validate_lora_segments(p.segments, p.num_segments, p.num_tokens, p.v_stride));
  if (p.num_segments > 0 && (!p.x || !p.v)) return invalid_argument("lora_shrink: null x or v");
  for (int32_t i = 0; i < p.num_segments; ++i) {
    const LoraSegment& s = p.segments[i];
    if (s.end == s.begin) continue;
    // v[seg, :rank] = x[seg, :in] A^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.end - s.begin, s.rank,
                static_cast<int>(p.in_dim), 1.0f, p.x + s.begin * p.x_stride,
                static_cast<int>(p.x_stride), s.a, static_cast<int>(p.in_dim), 0.0f,
                p.v + s.begin * p.v_stride, static_cast<int>(p.v_stride));
  }
  return ok_status();
}

Status lora_expand_ref(const LoraExpandParams& p) {
  if (p.out_dim <= 0 || p.y_stride < p.out_dim || p.v_stride <= 0) {
    return invalid_argument("lora_expand: need out_dim > 0, y_stride >= out_dim, v_stride > 0");
  }
  if (!fits_int(p.y_stride) || !fits_int(p.v_stride) || !fits_int(p.num_tokens)) {
    return invalid_argument("lora_expand: sizes exceed the BLAS int range");
  }
  LS_RETURN_IF_ERROR(validate_lora_segments(p.segments, p.num_segments, p.num_tokens, p.v_stride));
  if (p.num_segments > 0 && (!p.v || !p.y)) return invalid_argument("lora_expand: null v or y");
  for (int32_t i = 0; i < p.num_segments; ++i) {
    const LoraSegment& s = p.segments[i];
    if (s.end == s.begin) continue;
    // y[seg, :out] += scale * v[seg, :rank] Bt
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.end - s.begin,
                static_cast<int>(p.out_dim), s.rank, s.scale, p.v + s.begin * p.v_stride,
                static_cast<int>(p.v_stride), s.bt, static_cast<int>(p.out_dim), 1.0f,
                p.y + s.begin * p.y_stride, static_cast<int>(p.y_stride));
  }
  return ok_status();
}

}  // namespace loraserve::kernels
