// CUDA paged LoRA (SGMV semantics, heterogeneous ranks), bf16 storage and
// fp32 accumulation. Straightforward first versions:
//   shrink: a block per (token, chunk of kShrinkRows rank rows); each warp
//           takes one rank row at a time and dots it with x over in_dim.
//   expand: a block per (token, chunk of kExpandCols output columns); each
//           thread owns one column and sums over the segment's rank.
// A token finds its segment by binary search over the sorted segments. An
// image row may straddle pages, so rows are walked in page-contiguous runs
// (the run loop is uniform across the warp/block; one division per run).
#include <algorithm>

#include "common/cuda_check.h"
#include "kernels/cuda_util.cuh"
#include "kernels/lora/lora_paged.h"

namespace loraserve::kernels {
namespace {

constexpr int kShrinkWarps = 4;
constexpr int kShrinkRows = 16;  // rank rows per shrink block
constexpr int kExpandCols = 256;  // output columns per expand block (= threads)

// Index of the segment holding token t, or -1.
__device__ int find_segment(const PagedLoraSegmentDev* segs, int n, int64_t t) {
  int lo = 0, hi = n - 1, found = -1;
  while (lo <= hi) {
    const int mid = (lo + hi) / 2;
    if (segs[mid].begin <= t) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (found < 0 || t >= segs[found].end) return -1;
  return found;
}

__global__ void __launch_bounds__(kShrinkWarps * 32)
lora_shrink_bf16_kernel(const uint16_t* __restrict__ x, int64_t x_stride, uint16_t* __restrict__ v,
                        int64_t v_stride, int64_t in_dim, const uint16_t* __restrict__ pool,
                        int64_t page_elems, const PagedLoraSegmentDev* __restrict__ segs,
                        const int32_t* __restrict__ page_ids, int num_segments) {
  const int64_t t = blockIdx.x;
  const int si = find_segment(segs, num_segments, t);
  if (si < 0) return;
  const PagedLoraSegmentDev s = segs[si];
  const int j0 = blockIdx.y * kShrinkRows;
  if (j0 >= s.rank) return;
  const int j_end = min(j0 + kShrinkRows, s.rank);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const uint16_t* xr = x + t * x_stride;
  const int32_t* pages = page_ids + s.page_begin;
  for (int j = j0 + warp; j < j_end; j += kShrinkWarps) {
    const int64_t row_start = s.a_offset + static_cast<int64_t>(j) * in_dim;
    float acc = 0.0f;
    int64_t col = 0;
    while (col < in_dim) {
      const int64_t e = row_start + col;
      const int64_t in_page = e % page_elems;
      const int64_t len = min(in_dim - col, page_elems - in_page);
      const uint16_t* a = pool + static_cast<int64_t>(pages[e / page_elems]) * page_elems + in_page;
      for (int64_t c = lane; c < len; c += 32) acc += cuda::ld_bf16(xr + col + c) * cuda::ld_bf16(a + c);
      col += len;
    }
    acc = cuda::warp_sum(acc);
    if (lane == 0) cuda::st_bf16(v + t * v_stride + j, acc);
  }
}

__global__ void __launch_bounds__(kExpandCols)
lora_expand_bf16_kernel(const uint16_t* __restrict__ v, int64_t v_stride, uint16_t* __restrict__ y,
                        int64_t y_stride, int64_t out_dim, const uint16_t* __restrict__ pool,
                        int64_t page_elems, const PagedLoraSegmentDev* __restrict__ segs,
                        const int32_t* __restrict__ page_ids, int num_segments) {
  LS_DYNAMIC_SHARED(float, s_v);  // [rank]
  const int64_t t = blockIdx.x;
  const int si = find_segment(segs, num_segments, t);
  if (si < 0) return;
  const PagedLoraSegmentDev s = segs[si];
  for (int j = threadIdx.x; j < s.rank; j += kExpandCols) s_v[j] = cuda::ld_bf16(v + t * v_stride + j);
  __syncthreads();
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kExpandCols;
  const int64_t chunk = min(static_cast<int64_t>(kExpandCols), out_dim - c0);
  const int64_t tid = threadIdx.x;
  const int32_t* pages = page_ids + s.page_begin;
  float acc = 0.0f;
  for (int j = 0; j < s.rank; ++j) {
    const float coef = s_v[j];
    const int64_t base = s.bt_offset + static_cast<int64_t>(j) * out_dim + c0;
    int64_t col = 0;
    while (col < chunk) {  // uniform across the block
      const int64_t e = base + col;
      const int64_t in_page = e % page_elems;
      const int64_t len = min(chunk - col, page_elems - in_page);
      if (tid >= col && tid < col + len) {
        const uint16_t* bt = pool + static_cast<int64_t>(pages[e / page_elems]) * page_elems + in_page;
        acc += coef * cuda::ld_bf16(bt + (tid - col));
      }
      col += len;
    }
  }
  if (tid < chunk) {
    uint16_t* yp = y + t * y_stride + c0 + tid;
    cuda::st_bf16(yp, cuda::ld_bf16(yp) + s.scale * acc);
  }
}

Status check_common(const char* op, int64_t num_tokens, int32_t num_segments, int32_t max_rank,
                    int64_t v_stride, const void* pool, int64_t page_elems, const void* segs,
                    const void* page_ids) {
  if (num_tokens < 0 || num_tokens > 0x7fffffffll || num_segments < 0) {
    return invalid_argument(std::string(op) + ": bad num_tokens or num_segments");
  }
  if (num_segments == 0 || num_tokens == 0) return ok_status();
  if (!pool || page_elems <= 0 || !segs || !page_ids) {
    return invalid_argument(std::string(op) + ": null pool, segments or page ids");
  }
  if (max_rank <= 0 || max_rank > v_stride || max_rank > 8192) {
    return invalid_argument(std::string(op) + ": max_rank outside [1, min(v_stride, 8192)]");
  }
  return ok_status();
}

}  // namespace

Status launch_lora_shrink_paged_bf16(const PagedLoraShrinkBf16Params& p, cudaStream_t stream) {
  LS_RETURN_IF_ERROR(check_common("lora_shrink_bf16", p.num_tokens, p.num_segments, p.max_rank,
                                  p.v_stride, p.pool, p.page_elems, p.segments, p.page_ids));
  if (p.num_segments == 0 || p.num_tokens == 0) return ok_status();
  if (!p.x || !p.v || p.in_dim <= 0 || p.x_stride < p.in_dim) {
    return invalid_argument("lora_shrink_bf16: bad x/v");
  }
  const dim3 grid(static_cast<unsigned>(p.num_tokens),
                  static_cast<unsigned>((p.max_rank + kShrinkRows - 1) / kShrinkRows));
  LS_LAUNCH(lora_shrink_bf16_kernel, grid, kShrinkWarps * 32, 0, stream)(
      p.x, p.x_stride, p.v, p.v_stride, p.in_dim, p.pool, p.page_elems, p.segments, p.page_ids,
      p.num_segments);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

Status launch_lora_expand_paged_bf16(const PagedLoraExpandBf16Params& p, cudaStream_t stream) {
  LS_RETURN_IF_ERROR(check_common("lora_expand_bf16", p.num_tokens, p.num_segments, p.max_rank,
                                  p.v_stride, p.pool, p.page_elems, p.segments, p.page_ids));
  if (p.num_segments == 0 || p.num_tokens == 0) return ok_status();
  if (!p.v || !p.y || p.out_dim <= 0 || p.y_stride < p.out_dim) {
    return invalid_argument("lora_expand_bf16: bad v/y");
  }
  const int64_t chunks = (p.out_dim + kExpandCols - 1) / kExpandCols;
  if (chunks > 65535) return invalid_argument("lora_expand_bf16: out_dim too large");
  const dim3 grid(static_cast<unsigned>(p.num_tokens), static_cast<unsigned>(chunks));
  const size_t smem = static_cast<size_t>(p.max_rank) * sizeof(float);
  LS_LAUNCH(lora_expand_bf16_kernel, grid, kExpandCols, smem, stream)(
      p.v, p.v_stride, p.y, p.y_stride, p.out_dim, p.pool, p.page_elems, p.segments, p.page_ids,
      p.num_segments);
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
