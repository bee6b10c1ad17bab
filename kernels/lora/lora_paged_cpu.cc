// The cpu-bf16 backend's paged LoRA: lora_paged_ref's math with SIMD dot
// products (shrink) and axpys (expand) over page-contiguous runs of the
// adapter image, for a slice of token rows. Shrink reads each A row once
// per token from L2 (rank x in_dim f32 is at most a few hundred KiB).
#include <algorithm>

#include "kernels/gemm/gemm_bf16.h"
#include "kernels/lora/lora_paged.h"

namespace loraserve::kernels {

void lora_shrink_paged_cpu(const PagedLoraShrinkParams& p, int isa_int, int64_t t_begin,
                           int64_t t_end) {
  const CpuIsa isa = static_cast<CpuIsa>(isa_int);
  for (int32_t si = 0; si < p.num_segments; ++si) {
    const PagedLoraSegment& s = p.segments[si];
    const int64_t b = std::max<int64_t>(s.begin, t_begin), e = std::min<int64_t>(s.end, t_end);
    for (int32_t j = 0; j < s.rank && b < e; ++j) {
      for (int64_t t = b; t < e; ++t) p.v[t * p.v_stride + j] = 0.0f;
      for_each_page_run(p.pool, p.page_elems, s.page_ids, s.a_offset + j * p.in_dim, p.in_dim,
                   [&](const float* a, int64_t col, int64_t len) {
                     for (int64_t t = b; t < e; ++t) {
                       p.v[t * p.v_stride + j] += dot_f32(p.x + t * p.x_stride + col, a, len, isa);
                     }
                   });
    }
  }
}

void lora_expand_paged_cpu(const PagedLoraExpandParams& p, int isa_int, int64_t t_begin,
                           int64_t t_end) {
  const CpuIsa isa = static_cast<CpuIsa>(isa_int);
  for (int32_t si = 0; si < p.num_segments; ++si) {
    const PagedLoraSegment& s = p.segments[si];
    const int64_t b = std::max<int64_t>(s.begin, t_begin), e = std::min<int64_t>(s.end, t_end);
    for (int32_t j = 0; j < s.rank && b < e; ++j) {
      for_each_page_run(p.pool, p.page_elems, s.page_ids, s.bt_offset + j * p.out_dim, p.out_dim,
                   [&](const float* bt, int64_t col, int64_t len) {
                     for (int64_t t = b; t < e; ++t) {
                       axpy_f32(s.scale * p.v[t * p.v_stride + j], bt, p.y + t * p.y_stride + col,
                                len, isa);
                     }
                   });
    }
  }
}

}  // namespace loraserve::kernels
