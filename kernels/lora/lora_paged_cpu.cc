// The cpu-bf16 backend's paged LoRA: lora_paged_ref's math with SIMD dot
// products (shrink) and axpys (expand) over page-contiguous runs of the
// adapter image, for a slice of token rows. Shrink reads each A row once
// per token from L2 (rank x in_dim is at most a few hundred KiB). The image
// is f32 or bf16 (W = uint16_t, widened exactly as it is read): in a decode
// step every sequence reads its own adapter's A and Bt once, so the step
// reads the adapters' bytes, and bf16 halves them.
#include <algorithm>

#include "kernels/gemm/gemm_bf16.h"
#include "kernels/lora/lora_paged.h"

namespace loraserve::kernels {

template <typename W>
void lora_shrink_paged_cpu(const PagedLoraShrinkParamsOver<W>& p, int isa_int, int64_t t_begin,
                           int64_t t_end) {
  const CpuIsa isa = static_cast<CpuIsa>(isa_int);
  for (int32_t si = 0; si < p.num_segments; ++si) {
    const PagedLoraSegment& s = p.segments[si];
    const int64_t b = std::max<int64_t>(s.begin, t_begin), e = std::min<int64_t>(s.end, t_end);
    for (int32_t j = 0; j < s.rank && b < e; ++j) {
      for (int64_t t = b; t < e; ++t) p.v[t * p.v_stride + j] = 0.0f;
      for_each_page_run(p.pool, p.page_elems, s.page_ids, s.a_offset + j * p.in_dim, p.in_dim,
                   [&](const W* a, int64_t col, int64_t len) {
                     for (int64_t t = b; t < e; ++t) {
                       p.v[t * p.v_stride + j] += dot_f32(p.x + t * p.x_stride + col, a, len, isa);
                     }
                   });
    }
  }
}

template <typename W>
void lora_expand_paged_cpu(const PagedLoraExpandParamsOver<W>& p, int isa_int, int64_t t_begin,
                           int64_t t_end) {
  const CpuIsa isa = static_cast<CpuIsa>(isa_int);
  for (int32_t si = 0; si < p.num_segments; ++si) {
    const PagedLoraSegment& s = p.segments[si];
    const int64_t b = std::max<int64_t>(s.begin, t_begin), e = std::min<int64_t>(s.end, t_end);
    for (int32_t j = 0; j < s.rank && b < e; ++j) {
      for_each_page_run(p.pool, p.page_elems, s.page_ids, s.bt_offset + j * p.out_dim, p.out_dim,
                   [&](const W* bt, int64_t col, int64_t len) {
                     for (int64_t t = b; t < e; ++t) {
                       axpy_f32(s.scale * p.v[t * p.v_stride + j], bt, p.y + t * p.y_stride + col,
                                len, isa);
                     }
                   });
    }
  }
}

template void lora_shrink_paged_cpu(const PagedLoraShrinkParamsOver<float>&, int, int64_t, int64_t);
template void lora_shrink_paged_cpu(const PagedLoraShrinkParamsOver<uint16_t>&, int, int64_t, int64_t);
template void lora_expand_paged_cpu(const PagedLoraExpandParamsOver<float>&, int, int64_t, int64_t);
template void lora_expand_paged_cpu(const PagedLoraExpandParamsOver<uint16_t>&, int, int64_t, int64_t);

}  // namespace loraserve::kernels
