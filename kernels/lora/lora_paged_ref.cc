#include <algorithm>
#include <string>

#include "kernels/lora/lora_paged.h"

namespace loraserve::kernels {
namespace {

Status validate(const PagedLoraSegment* segs, int32_t n, int64_t num_tokens, int64_t max_rank,
                const void* pool, int64_t page_elems) {
  if (n > 0 && (segs == nullptr || pool == nullptr || page_elems <= 0)) {
    return invalid_argument("paged lora: null segments or pool");
  }
  int32_t prev_end = 0;
  for (int32_t i = 0; i < n; ++i) {
    const PagedLoraSegment& s = segs[i];
    const std::string at = "paged lora segment " + std::to_string(i);
    if (s.begin < prev_end || s.end < s.begin || s.end > num_tokens) {
      return invalid_argument(at + ": rows [" + std::to_string(s.begin) + ", " +
                              std::to_string(s.end) + ") overlap or leave the batch");
    }
    if (s.rank <= 0 || s.rank > max_rank) {
      return invalid_argument(at + ": rank " + std::to_string(s.rank) + " outside [1, " +
                              std::to_string(max_rank) + "]");
    }
    if (s.page_ids == nullptr || s.a_offset < 0 || s.bt_offset < 0) {
      return invalid_argument(at + ": missing page table or negative offset");
    }
    prev_end = s.end;
  }
  return ok_status();
}

}  // namespace

template <typename W>
Status validate_lora_shrink_paged(const PagedLoraShrinkParamsOver<W>& p) {
  if (p.num_segments > 0 && (p.x == nullptr || p.v == nullptr || p.in_dim <= 0 ||
                             p.x_stride < p.in_dim)) {
    return invalid_argument("paged lora shrink: bad x/v");
  }
  return validate(p.segments, p.num_segments, p.num_tokens, p.v_stride, p.pool, p.page_elems);
}

Status lora_shrink_paged_ref(const PagedLoraShrinkParams& p) {
  LS_RETURN_IF_ERROR(validate_lora_shrink_paged(p));
  for (int32_t si = 0; si < p.num_segments; ++si) {
    const PagedLoraSegment& s = p.segments[si];
    for (int32_t t = s.begin; t < s.end; ++t) {
      const float* x = p.x + static_cast<int64_t>(t) * p.x_stride;
      float* v = p.v + static_cast<int64_t>(t) * p.v_stride;
      for (int32_t j = 0; j < s.rank; ++j) {
        float acc = 0.0f;
        for_each_page_run(p.pool, p.page_elems, s.page_ids, s.a_offset + j * p.in_dim, p.in_dim,
                     [&](const float* a, int64_t col, int64_t len) {
                       for (int64_t c = 0; c < len; ++c) acc += x[col + c] * a[c];
                     });
        v[j] = acc;
      }
    }
  }
  return ok_status();
}

template <typename W>
Status validate_lora_expand_paged(const PagedLoraExpandParamsOver<W>& p) {
  if (p.num_segments > 0 && (p.v == nullptr || p.y == nullptr || p.out_dim <= 0 ||
                             p.y_stride < p.out_dim)) {
    return invalid_argument("paged lora expand: bad v/y");
  }
  return validate(p.segments, p.num_segments, p.num_tokens, p.v_stride, p.pool, p.page_elems);
}

Status lora_expand_paged_ref(const PagedLoraExpandParams& p) {
  LS_RETURN_IF_ERROR(validate_lora_expand_paged(p));
  for (int32_t si = 0; si < p.num_segments; ++si) {
    const PagedLoraSegment& s = p.segments[si];
    for (int32_t t = s.begin; t < s.end; ++t) {
      const float* v = p.v + static_cast<int64_t>(t) * p.v_stride;
      float* y = p.y + static_cast<int64_t>(t) * p.y_stride;
      for (int32_t j = 0; j < s.rank; ++j) {
        const float coef = s.scale * v[j];
        for_each_page_run(p.pool, p.page_elems, s.page_ids, s.bt_offset + j * p.out_dim, p.out_dim,
                     [&](const float* bt, int64_t col, int64_t len) {
                       for (int64_t c = 0; c < len; ++c) y[col + c] += coef * bt[c];
                     });
      }
    }
  }
  return ok_status();
}

template Status validate_lora_shrink_paged(const PagedLoraShrinkParamsOver<float>&);
template Status validate_lora_shrink_paged(const PagedLoraShrinkParamsOver<uint16_t>&);
template Status validate_lora_expand_paged(const PagedLoraExpandParamsOver<float>&);
template Status validate_lora_expand_paged(const PagedLoraExpandParamsOver<uint16_t>&);

}  // namespace loraserve::kernels
