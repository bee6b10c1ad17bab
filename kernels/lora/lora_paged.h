// LoRA shrink/expand with adapter weights read from pages of the unified
// pool: the serving form of lora.h. Same math (SGMV semantics):
//   shrink:  v[t, :rank_s] = x[t] A_s^T
//   expand:  y[t]         += scale_s * v[t, :rank_s] Bt_s
// but A_s and Bt_s live in the adapter's image (memory/adapter_store.h),
// which is spread over non-contiguous pages: element e of the image is at
//   pool + page_ids[e / page_elems] * page_elems + e % page_elems.
// Ranks differ per segment; nothing is padded to a maximum rank.
// The image's elements are f32 (the cpu backend, the reference) or bf16
// (cpu-bf16: the *Over<uint16_t> forms, each element widened exactly).
#pragma once

#include <cstdint>

#include "common/status.h"

namespace loraserve::kernels {

struct PagedLoraSegment {
  int32_t begin = 0;                // first token row
  int32_t end = 0;                  // one past the last token row
  int32_t rank = 0;
  float scale = 1.0f;
  const int32_t* page_ids = nullptr;  // the adapter's pages, image order
  int64_t a_offset = 0;             // element offset of A [rank, in_dim] in the image
  int64_t bt_offset = 0;            // element offset of Bt [rank, out_dim] in the image
};

// Calls fn(ptr, col, len) for each page-contiguous run of the image range
// [offset, offset + n): a row of A or Bt may cross a page boundary.
template <typename W, typename Fn>
inline void for_each_page_run(const W* pool, int64_t page_elems, const int32_t* page_ids,
                              int64_t offset, int64_t n, Fn&& fn) {
  int64_t col = 0;
  while (col < n) {
    const int64_t e = offset + col;
    const int64_t in_page = e % page_elems;
    const int64_t len = n - col < page_elems - in_page ? n - col : page_elems - in_page;
    fn(pool + static_cast<int64_t>(page_ids[e / page_elems]) * page_elems + in_page, col, len);
    col += len;
  }
}

template <typename W>
struct PagedLoraShrinkParamsOver {
  const float* x = nullptr;   // [num_tokens, x_stride]
  int64_t x_stride = 0;
  float* v = nullptr;         // [num_tokens, v_stride], v_stride >= max rank
  int64_t v_stride = 0;
  int64_t in_dim = 0;
  int64_t num_tokens = 0;
  const W* pool = nullptr;
  int64_t page_elems = 0;     // elements per page (page stride)
  const PagedLoraSegment* segments = nullptr;
  int32_t num_segments = 0;
};
using PagedLoraShrinkParams = PagedLoraShrinkParamsOver<float>;

Status lora_shrink_paged_ref(const PagedLoraShrinkParams& p);

template <typename W>
struct PagedLoraExpandParamsOver {
  const float* v = nullptr;   // [num_tokens, v_stride]
  int64_t v_stride = 0;
  float* y = nullptr;         // [num_tokens, y_stride], += into the first out_dim columns
  int64_t y_stride = 0;
  int64_t out_dim = 0;
  int64_t num_tokens = 0;
  const W* pool = nullptr;
  int64_t page_elems = 0;
  const PagedLoraSegment* segments = nullptr;
  int32_t num_segments = 0;
};
using PagedLoraExpandParams = PagedLoraExpandParamsOver<float>;

Status lora_expand_paged_ref(const PagedLoraExpandParams& p);

// The checks the two _ref functions make, for kernels that run token slices
// (W: float or uint16_t).
template <typename W>
Status validate_lora_shrink_paged(const PagedLoraShrinkParamsOver<W>& p);
template <typename W>
Status validate_lora_expand_paged(const PagedLoraExpandParamsOver<W>& p);

// The cpu-bf16 backend's forms: the same math on SIMD (`isa` a CpuIsa of
// gemm_bf16.h as an int), for the token rows [t_begin, t_end) of every
// segment only, so threads can take disjoint rows. The caller validates.
// W is float or uint16_t (bf16 images: half the bytes a decode step reads).
template <typename W>
void lora_shrink_paged_cpu(const PagedLoraShrinkParamsOver<W>& p, int isa, int64_t t_begin,
                           int64_t t_end);
template <typename W>
void lora_expand_paged_cpu(const PagedLoraExpandParamsOver<W>& p, int isa, int64_t t_begin,
                           int64_t t_end);

}  // namespace loraserve::kernels

#ifdef LORASERVE_WITH_CUDA
#include <cuda_runtime.h>
namespace loraserve::kernels {
// Device form of PagedLoraSegment: the page table is a slice
// [page_begin, page_begin + num_pages) of one device array of page ids
// shared by all segments of a launch (the cuda backend concatenates them).
struct PagedLoraSegmentDev {
  int32_t begin = 0;       // first token row
  int32_t end = 0;         // one past the last token row
  int32_t rank = 0;
  float scale = 1.0f;
  int32_t page_begin = 0;  // into the launch's page_ids
  int32_t num_pages = 0;
  int64_t a_offset = 0;    // element offset of A [rank, in_dim] in the image
  int64_t bt_offset = 0;   // element offset of Bt [rank, out_dim] in the image
};

// bf16 pool, x, y and scratch v (uint16_t bit patterns), fp32 accumulation.
// `segments` and `page_ids` are device arrays; segments are sorted by
// begin and do not overlap (checked on the host by the caller). Tokens in
// no segment are left untouched.
struct PagedLoraShrinkBf16Params {
  const uint16_t* x = nullptr;  // [num_tokens, x_stride]
  int64_t x_stride = 0;
  uint16_t* v = nullptr;        // [num_tokens, v_stride], v_stride >= max_rank
  int64_t v_stride = 0;
  int64_t in_dim = 0;
  int64_t num_tokens = 0;
  const uint16_t* pool = nullptr;
  int64_t page_elems = 0;       // bf16 elements per page
  const PagedLoraSegmentDev* segments = nullptr;  // [num_segments] device
  const int32_t* page_ids = nullptr;              // device
  int32_t num_segments = 0;
  int32_t max_rank = 0;         // max over segments (sizes the grid)
};
Status launch_lora_shrink_paged_bf16(const PagedLoraShrinkBf16Params& p, cudaStream_t stream);

struct PagedLoraExpandBf16Params {
  const uint16_t* v = nullptr;  // [num_tokens, v_stride]
  int64_t v_stride = 0;
  uint16_t* y = nullptr;        // [num_tokens, y_stride], += into the first out_dim columns
  int64_t y_stride = 0;
  int64_t out_dim = 0;
  int64_t num_tokens = 0;
  const uint16_t* pool = nullptr;
  int64_t page_elems = 0;
  const PagedLoraSegmentDev* segments = nullptr;
  const int32_t* page_ids = nullptr;
  int32_t num_segments = 0;
  int32_t max_rank = 0;
};
Status launch_lora_expand_paged_bf16(const PagedLoraExpandBf16Params& p, cudaStream_t stream);
}  // namespace loraserve::kernels
#endif
