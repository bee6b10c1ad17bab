// CUDA paged LoRA (SGMV semantics, heterogeneous ranks), bf16 storage and
// fp32 accumulation, written for the memory-bound decode shapes (BGMV-like:
// one token per adapter, every weight byte read once, 16-byte loads).
//
// Both kernels run blocks of up to kThreads (256) threads (fewer for small
// dims) over a grid of
//   x: token tiles of TT consecutive tokens (TT = 1, or kTile = 4 when the
//      segments average >= 4 tokens: the tile's tokens share every weight
//      load, for prefill);
//   y: a slice of one token's work (rank rows for shrink, output columns
//      for expand), so that small batches still spread over many SMs.
// A tile may hold tokens of several segments (or none): the block walks its
// tile segment by segment (a segment is found by probing segs[t], which is
// right for decode batches, then by binary search); tokens in no segment are
// never written, nor are v columns >= the segment's rank.
//
// shrink (v[t, j] = x[t] . A[j]): a block takes up to `rows_per_block`
//   (<= kMaxRows = 8) rank rows j0.. of its tile's segment and splits in_dim
//   across its threads: thread i takes the 8-column groups i, i + 256, ...
//   For each group it loads x once (8 values per token, in registers, used
//   for every row), then issues one 16-byte load per row, all 8 before the
//   first is used (rows past the block's last row repeat it: L1 hits whose
//   sums are dropped), then does the FMAs. Partial sums: warp shuffles, then
//   across warps in shared memory (static, < 1.3 KiB); no atomics. On the
//   host rows_per_block is halved while the grid has fewer than kMinBlocks
//   blocks and a block would read more than kMinRowElems weights (batch 1,
//   in_dim 4096, rank 16: 2 rows = 16 KiB per block, 8 blocks).
// expand (y[t] += scale * v[t] Bt): a block takes 64 groups of 8 output
//   columns x 4 rank slices: thread (slice, group) sums rows slice,
//   slice + 4, ... of its 8 columns, one 16-byte Bt load per row, in
//   batches of 4 loads in flight. Dynamic shared memory (<= 24 KiB) holds
//   v[t, :] in fp32 and the rows' page mapping, in chunks of
//   kExpandRowChunk = 256 rows (any rank works), then the slices' partial
//   sums. Slice 0 loads its y vector before the row loop, adds the other
//   slices' sums and stores y: 16-byte accesses where aligned.
//
// Pages. An image row may straddle pages. Two variants per kernel:
//   VEC (chosen on the host when dim % 8 == 0, page_elems % 8 == 0,
//     page_elems >= dim and the pool is 16-byte aligned): every row of a
//     segment then has the same address phase ph = offset % 8 (in
//     elements), spans at most two pages, and its page boundary falls on
//     a column c with (c + ph) % 8 == 0. The 8-column groups are laid at
//     columns 8g - ph, so every weight load is an aligned 16-byte vector
//     that never crosses a page: a row is two pointers and a split column
//     (RowMap), computed once per block. The first and last group of a row
//     are partial when ph != 0: the vector is still the aligned one inside
//     the same page, and the lanes outside the row are masked to +0 (bit
//     mask, so padding that holds NaN cannot leak). x / y use vectors where
//     their own address is aligned, else element by element.
//   generic (any page_elems, dims, offsets): groups at columns 8g; a group
//     is one vector load where it is aligned and inside one page, else 8
//     scalar loads that walk page boundaries (rows may span many pages).
#include <algorithm>
#include <string>
#include <type_traits>

#include "common/cuda_check.h"
#include "kernels/cuda_util.cuh"
#include "kernels/lora/lora_paged.h"

namespace loraserve::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 4;          // tokens per block in the tiled (prefill) variants
constexpr int kMaxRows = 8;       // shrink: most rank rows per block
constexpr int kMinBlocks = 256;   // shrink: fewer rows per block until the grid has this many
constexpr int64_t kMinRowElems = 8192;  // ... or a block has at most this many weights
constexpr int kColGroups = 64;    // expand: 8-column groups per block
constexpr int kRankSlices = kThreads / kColGroups;  // expand: rank slices per block
constexpr int kExpandRowChunk = 256;                 // expand: rows per shared-memory chunk

// Index of the segment holding token t, or -1. Decode batches have one
// segment per token, so segs[t] is tried first.
__device__ __forceinline__ int find_segment(const PagedLoraSegmentDev* segs, int n, int64_t t) {
  const int guess = static_cast<int>(min(t, static_cast<int64_t>(n - 1)));
  if (segs[guess].begin <= t && t < segs[guess].end) return guess;
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

// VEC variant: image row [e, e + n), n <= page_elems, lies in at most two
// pages; column c < split is at pool[base0 + c], column c >= split at
// pool[base1 + c].
struct RowMap {
  int64_t base0;
  int64_t base1;
  int64_t split;
};

// Generic variant: the row starts at element `in` of the segment's page `pg`.
struct RowPos {
  int64_t pg;
  int64_t in;
};

__device__ __forceinline__ void map_row(const int32_t* pages, int64_t page_elems, int64_t e,
                                        int64_t n, RowMap& r) {
  const int64_t pg = e / page_elems;
  const int64_t in = e - pg * page_elems;
  r.base0 = static_cast<int64_t>(pages[pg]) * page_elems + in;
  r.split = page_elems - in;
  if (r.split < n) {
    r.base1 = static_cast<int64_t>(pages[pg + 1]) * page_elems - r.split;
  } else {
    r.split = n;
    r.base1 = r.base0;
  }
}

__device__ __forceinline__ void map_row(const int32_t*, int64_t page_elems, int64_t e, int64_t,
                                        RowPos& r) {
  r.pg = e / page_elems;
  r.in = e - r.pg * page_elems;
}

// VEC: the aligned vector holding a row's group at columns [cs, cs + 8)
// (see the file comment). Unconditional and branch-free, so that a thread's
// loads for several rows are all in flight before the first is used.
__device__ __forceinline__ uint4 load_group_vec(const uint16_t* __restrict__ pool, const RowMap& r,
                                                int64_t cs) {
  return cuda::ldg_bf16x8(pool + (cs < r.split ? r.base0 : r.base1) + cs);
}

// Bit mask keeping the bf16 lanes [lo, hi) of a vector (the others become
// +0, whatever they held: padding may be NaN).
__device__ __forceinline__ uint4 lane_mask(int lo, int hi) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[i] = (2 * i >= lo && 2 * i < hi ? 0x0000ffffu : 0u) |
           (2 * i + 1 >= lo && 2 * i + 1 < hi ? 0xffff0000u : 0u);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ void unpack_masked(uint4 v, uint4 m, float (&f)[8]) {
  cuda::unpack_bf16x8(make_uint4(v.x & m.x, v.y & m.y, v.z & m.z, v.w & m.w), f);
}

// Generic: a vector where the group is whole, aligned and inside one page,
// else element by element across page boundaries.
__device__ __forceinline__ void load_group(const uint16_t* __restrict__ pool,
                                           const int32_t* __restrict__ pages, int64_t page_elems,
                                           const RowPos& r, int64_t cs, int lo, int hi,
                                           float (&f)[8]) {
  int64_t pg = r.pg;
  int64_t in = r.in + cs + lo;
  if (in >= page_elems) {
    const int64_t q = in / page_elems;
    pg += q;
    in -= q * page_elems;
  }
  const uint16_t* page = pool + static_cast<int64_t>(pages[pg]) * page_elems;
  if (lo == 0 && hi == 8 && in + 8 <= page_elems && cuda::is_aligned16(page + in)) {
    cuda::unpack_bf16x8(cuda::ldg_bf16x8(page + in), f);
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    if (i < lo || i >= hi) {
      f[i] = 0.0f;
      continue;
    }
    if (in == page_elems) {
      ++pg;
      in = 0;
      page = pool + static_cast<int64_t>(pages[pg]) * page_elems;
    }
    f[i] = cuda::ld_bf16(page + in);
    ++in;
  }
}

// Activations (x): row[cs + lo .. cs + hi) as fp32, 0 elsewhere; a vector
// where the group is whole and aligned.
__device__ __forceinline__ void load_act(const uint16_t* row, int64_t cs, int lo, int hi,
                                         float (&f)[8]) {
  if (lo == 0 && hi == 8 && cuda::is_aligned16(row + cs)) {
    cuda::unpack_bf16x8(cuda::ldg_bf16x8(row + cs), f);
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) f[i] = (i >= lo && i < hi) ? cuda::ld_bf16(row + (cs + i)) : 0.0f;
}

// ---------------------------------------------------------------- shrink
template <int TT, bool VEC>
__global__ void __launch_bounds__(kThreads)
lora_shrink_bf16_kernel(const uint16_t* __restrict__ x, int64_t x_stride, uint16_t* __restrict__ v,
                        int64_t v_stride, int64_t in_dim, int64_t num_tokens,
                        const uint16_t* __restrict__ pool, int64_t page_elems,
                        const PagedLoraSegmentDev* __restrict__ segs,
                        const int32_t* __restrict__ page_ids, int num_segments, int max_rank,
                        int rows_per_block) {
  using Row = std::conditional_t<VEC, RowMap, RowPos>;
  __shared__ Row s_rows[kMaxRows];
  __shared__ float s_red[kWarps][TT * kMaxRows];
  const int tid = threadIdx.x;
  const int threads = blockDim.x;  // a multiple of 32, <= kThreads
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int64_t t_first = static_cast<int64_t>(blockIdx.x) * TT;
  const int64_t t_lim = min(t_first + TT, num_tokens);
  const int j0 = static_cast<int>(blockIdx.y) * rows_per_block;
  // Everything up to the per-thread loads is uniform across the block.
  for (int64_t t = t_first; t < t_lim;) {
    const int si = find_segment(segs, num_segments, t);
    if (si < 0) {
      ++t;
      continue;
    }
    const PagedLoraSegmentDev s = segs[si];
    const int64_t t_end = min(static_cast<int64_t>(s.end), t_lim);
    const int nt = static_cast<int>(t_end - t);
    const int rank = min(s.rank, max_rank);
    if (j0 < rank) {
      const int jn = min(rows_per_block, rank - j0);
      const int32_t* pages = page_ids + s.page_begin;
      __syncthreads();  // the previous segment's s_rows / s_red are read
      if (tid < jn) {
        map_row(pages, page_elems, s.a_offset + static_cast<int64_t>(j0 + tid) * in_dim, in_dim,
                s_rows[tid]);
      }
      __syncthreads();
      const int ph = VEC ? static_cast<int>(s.a_offset & 7) : 0;
      const int64_t groups = (in_dim + ph + 7) / 8;
      float acc[TT][kMaxRows];
#pragma unroll
      for (int tt = 0; tt < TT; ++tt) {
#pragma unroll
        for (int jj = 0; jj < kMaxRows; ++jj) acc[tt][jj] = 0.0f;
      }
      for (int64_t g = tid; g < groups; g += threads) {
        const int64_t cs = g * 8 - ph;
        const int lo = cs < 0 ? static_cast<int>(-cs) : 0;
        const int hi = static_cast<int>(min(static_cast<int64_t>(8), in_dim - cs));
        float xf[TT][8];
#pragma unroll
        for (int tt = 0; tt < TT; ++tt) {
          if (tt < nt) {
            load_act(x + (t + tt) * x_stride, cs, lo, hi, xf[tt]);
          } else {
#pragma unroll
            for (int i = 0; i < 8; ++i) xf[tt][i] = 0.0f;
          }
        }
        if constexpr (VEC) {
          // All kMaxRows loads first (rows past jn repeat row jn - 1: an L1
          // hit, and their sums are never stored), then the math.
          uint4 raw[kMaxRows];
#pragma unroll
          for (int jj = 0; jj < kMaxRows; ++jj) {
            raw[jj] = load_group_vec(pool, s_rows[min(jj, jn - 1)], cs);
          }
          const uint4 m = lane_mask(lo, hi);
#pragma unroll
          for (int jj = 0; jj < kMaxRows; ++jj) {
            float af[8];
            unpack_masked(raw[jj], m, af);
#pragma unroll
            for (int tt = 0; tt < TT; ++tt) {
#pragma unroll
              for (int i = 0; i < 8; ++i) acc[tt][jj] = fmaf(xf[tt][i], af[i], acc[tt][jj]);
            }
          }
        } else {
#pragma unroll
          for (int jj = 0; jj < kMaxRows; ++jj) {
            if (jj < jn) {
              float af[8];
              load_group(pool, pages, page_elems, s_rows[jj], cs, lo, hi, af);
#pragma unroll
              for (int tt = 0; tt < TT; ++tt) {
#pragma unroll
                for (int i = 0; i < 8; ++i) acc[tt][jj] = fmaf(xf[tt][i], af[i], acc[tt][jj]);
              }
            }
          }
        }
      }
#pragma unroll
      for (int tt = 0; tt < TT; ++tt) {
#pragma unroll
        for (int jj = 0; jj < kMaxRows; ++jj) {
          if (tt < nt && jj < jn) {
            const float r = cuda::warp_sum(acc[tt][jj]);
            if (lane == 0) s_red[warp][tt * kMaxRows + jj] = r;
          }
        }
      }
      __syncthreads();
      if (tid < TT * kMaxRows) {
        const int tt = tid / kMaxRows;
        const int jj = tid % kMaxRows;
        if (tt < nt && jj < jn) {
          float sum = 0.0f;
#pragma unroll
          for (int w = 0; w < kWarps; ++w) {
            if (w < threads / 32) sum += s_red[w][tid];
          }
          cuda::st_bf16(v + (t + tt) * v_stride + j0 + jj, sum);
        }
      }
    }
    t = t_end;
  }
}

// ---------------------------------------------------------------- expand
template <int TT, bool VEC>
constexpr size_t expand_smem_bytes() {
  using Row = std::conditional_t<VEC, RowMap, RowPos>;
  const size_t rows = kExpandRowChunk * (sizeof(Row) + TT * sizeof(float));
  const size_t red = static_cast<size_t>(kRankSlices - 1) * TT * kColGroups * 8 * sizeof(float);
  return rows > red ? rows : red;
}

template <int TT, bool VEC>
__global__ void __launch_bounds__(kThreads)
lora_expand_bf16_kernel(const uint16_t* __restrict__ v, int64_t v_stride, uint16_t* __restrict__ y,
                        int64_t y_stride, int64_t out_dim, int64_t num_tokens,
                        const uint16_t* __restrict__ pool, int64_t page_elems,
                        const PagedLoraSegmentDev* __restrict__ segs,
                        const int32_t* __restrict__ page_ids, int num_segments, int max_rank) {
  using Row = std::conditional_t<VEC, RowMap, RowPos>;
  // [kExpandRowChunk] Row, then [TT][kExpandRowChunk] fp32 v; after the row
  // loop the same bytes hold the slices' partial sums
  // [kRankSlices - 1][TT][kColGroups][8].
  LS_DYNAMIC_SHARED(uint4, s_raw);
  Row* s_rows = reinterpret_cast<Row*>(s_raw);
  float* s_v = reinterpret_cast<float*>(s_rows + kExpandRowChunk);
  float* s_red = reinterpret_cast<float*>(s_raw);
  const int tid = threadIdx.x;
  const int col_groups = blockDim.x / kRankSlices;  // <= kColGroups
  const int cg = tid % col_groups;
  const int slice = tid / col_groups;
  const int64_t t_first = static_cast<int64_t>(blockIdx.x) * TT;
  const int64_t t_lim = min(t_first + TT, num_tokens);
  const int64_t g_first = static_cast<int64_t>(blockIdx.y) * col_groups;
  for (int64_t t = t_first; t < t_lim;) {
    const int si = find_segment(segs, num_segments, t);
    if (si < 0) {
      ++t;
      continue;
    }
    const PagedLoraSegmentDev s = segs[si];
    const int64_t t_end = min(static_cast<int64_t>(s.end), t_lim);
    const int nt = static_cast<int>(t_end - t);
    const int ph = VEC ? static_cast<int>(s.bt_offset & 7) : 0;
    const int64_t groups = (out_dim + ph + 7) / 8;
    if (g_first >= groups) {  // this block's columns lie past the row (uniform)
      t = t_end;
      continue;
    }
    const int64_t g = g_first + cg;
    const bool mine = g < groups;
    const int64_t cs = g * 8 - ph;
    const int lo = cs < 0 ? static_cast<int>(-cs) : 0;
    const int hi = mine ? static_cast<int>(min(static_cast<int64_t>(8), out_dim - cs)) : 0;
    const int rank = min(s.rank, max_rank);
    const int32_t* pages = page_ids + s.page_begin;
    // Slice 0 updates y: its aligned y vectors are loaded now, in the
    // shadow of the Bt loads, not after the reduction.
    bool y_vec[TT];
    uint4 y_old[TT];
#pragma unroll
    for (int tt = 0; tt < TT; ++tt) {
      const uint16_t* yr = y + (t + tt) * y_stride;
      y_vec[tt] = slice == 0 && mine && tt < nt && lo == 0 && hi == 8 && cuda::is_aligned16(yr + cs);
      y_old[tt] = y_vec[tt] ? cuda::ld_bf16x8(yr + cs) : make_uint4(0, 0, 0, 0);
    }
    float acc[TT][8];
#pragma unroll
    for (int tt = 0; tt < TT; ++tt) {
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[tt][i] = 0.0f;
    }
    for (int jc = 0; jc < rank; jc += kExpandRowChunk) {
      const int jn = min(kExpandRowChunk, rank - jc);
      __syncthreads();  // the previous chunk / segment is done with shared memory
      for (int j = tid; j < jn; j += blockDim.x) {
        map_row(pages, page_elems, s.bt_offset + static_cast<int64_t>(jc + j) * out_dim, out_dim,
                s_rows[j]);
#pragma unroll
        for (int tt = 0; tt < TT; ++tt) {
          s_v[tt * kExpandRowChunk + j] =
              tt < nt ? cuda::ld_bf16(v + (t + tt) * v_stride + jc + j) : 0.0f;
        }
      }
      __syncthreads();
      if (mine) {
        int j = slice;
        if constexpr (VEC) {
          // Rows in batches of kBatch: the batch's loads are all in flight
          // before the first is used.
          constexpr int kBatch = 4;
          const uint4 m = lane_mask(lo, hi);
          for (; j + (kBatch - 1) * kRankSlices < jn; j += kBatch * kRankSlices) {
            uint4 raw[kBatch];
#pragma unroll
            for (int q = 0; q < kBatch; ++q) {
              raw[q] = load_group_vec(pool, s_rows[j + q * kRankSlices], cs);
            }
#pragma unroll
            for (int q = 0; q < kBatch; ++q) {
              float bf[8];
              unpack_masked(raw[q], m, bf);
#pragma unroll
              for (int tt = 0; tt < TT; ++tt) {
                const float c = s_v[tt * kExpandRowChunk + j + q * kRankSlices];
#pragma unroll
                for (int i = 0; i < 8; ++i) acc[tt][i] = fmaf(c, bf[i], acc[tt][i]);
              }
            }
          }
          for (; j < jn; j += kRankSlices) {
            float bf[8];
            unpack_masked(load_group_vec(pool, s_rows[j], cs), m, bf);
#pragma unroll
            for (int tt = 0; tt < TT; ++tt) {
              const float c = s_v[tt * kExpandRowChunk + j];
#pragma unroll
              for (int i = 0; i < 8; ++i) acc[tt][i] = fmaf(c, bf[i], acc[tt][i]);
            }
          }
        } else {
          for (; j < jn; j += kRankSlices) {
            float bf[8];
            load_group(pool, pages, page_elems, s_rows[j], cs, lo, hi, bf);
#pragma unroll
            for (int tt = 0; tt < TT; ++tt) {
              const float c = s_v[tt * kExpandRowChunk + j];
#pragma unroll
              for (int i = 0; i < 8; ++i) acc[tt][i] = fmaf(c, bf[i], acc[tt][i]);
            }
          }
        }
      }
    }
    __syncthreads();  // s_rows / s_v are dead: reuse the bytes for the slices' sums
    if (slice > 0 && mine) {
#pragma unroll
      for (int tt = 0; tt < TT; ++tt) {
        float* dst = s_red + ((static_cast<int64_t>(slice - 1) * TT + tt) * col_groups + cg) * 8;
#pragma unroll
        for (int i = 0; i < 8; ++i) dst[i] = acc[tt][i];
      }
    }
    __syncthreads();
    if (slice == 0 && mine) {
#pragma unroll
      for (int tt = 0; tt < TT; ++tt) {
        if (tt < nt) {
          float out[8];
#pragma unroll
          for (int i = 0; i < 8; ++i) out[i] = acc[tt][i];
#pragma unroll
          for (int sl = 1; sl < kRankSlices; ++sl) {
            const float* src = s_red + ((static_cast<int64_t>(sl - 1) * TT + tt) * col_groups + cg) * 8;
#pragma unroll
            for (int i = 0; i < 8; ++i) out[i] += src[i];
          }
          uint16_t* yr = y + (t + tt) * y_stride;
          if (y_vec[tt]) {
            float yf[8];
            cuda::unpack_bf16x8(y_old[tt], yf);
#pragma unroll
            for (int i = 0; i < 8; ++i) yf[i] += s.scale * out[i];
            cuda::st_bf16x8(yr + cs, cuda::pack_bf16x8(yf));
          } else {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
              if (i >= lo && i < hi) {
                uint16_t* yp = yr + (cs + i);
                cuda::st_bf16(yp, cuda::ld_bf16(yp) + s.scale * out[i]);
              }
            }
          }
        }
      }
    }
    t = t_end;
  }
}

// ---------------------------------------------------------------- host
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

// Weights can take the VEC variant (see the file comment).
bool weights_vec(int64_t dim, const void* pool, int64_t page_elems) {
  return dim % 8 == 0 && page_elems % 8 == 0 && page_elems >= dim && cuda::is_aligned16(pool);
}

// Tokens per block: several when segments are long on average.
int tokens_per_block(int64_t num_tokens, int32_t num_segments) {
  return num_tokens >= static_cast<int64_t>(kTile) * num_segments ? kTile : 1;
}

// Threads for `groups` 8-column groups: a multiple of `unit`, at most `most`.
int threads_for(int64_t groups, int unit, int most) {
  return static_cast<int>(std::min<int64_t>(most, (groups + unit - 1) / unit * unit));
}

template <int TT, bool VEC>
void launch_shrink(const PagedLoraShrinkBf16Params& p, dim3 grid, int threads, int rows,
                   cudaStream_t stream) {
  auto* kernel = &lora_shrink_bf16_kernel<TT, VEC>;
  LS_LAUNCH(kernel, grid, threads, 0, stream)(
      p.x, p.x_stride, p.v, p.v_stride, p.in_dim, p.num_tokens, p.pool, p.page_elems, p.segments,
      p.page_ids, p.num_segments, p.max_rank, rows);
}

template <int TT, bool VEC>
void launch_expand(const PagedLoraExpandBf16Params& p, dim3 grid, int threads,
                   cudaStream_t stream) {
  auto* kernel = &lora_expand_bf16_kernel<TT, VEC>;
  constexpr size_t smem = expand_smem_bytes<TT, VEC>();
  LS_LAUNCH(kernel, grid, threads, smem, stream)(
      p.v, p.v_stride, p.y, p.y_stride, p.out_dim, p.num_tokens, p.pool, p.page_elems, p.segments,
      p.page_ids, p.num_segments, p.max_rank);
}

static_assert(expand_smem_bytes<kTile, true>() <= 48 * 1024, "expand smem over 48 KiB");
static_assert(expand_smem_bytes<kTile, false>() <= 48 * 1024, "expand smem over 48 KiB");

}  // namespace

Status launch_lora_shrink_paged_bf16(const PagedLoraShrinkBf16Params& p, cudaStream_t stream) {
  LS_RETURN_IF_ERROR(check_common("lora_shrink_bf16", p.num_tokens, p.num_segments, p.max_rank,
                                  p.v_stride, p.pool, p.page_elems, p.segments, p.page_ids));
  if (p.num_segments == 0 || p.num_tokens == 0) return ok_status();
  if (!p.x || !p.v || p.in_dim <= 0 || p.x_stride < p.in_dim) {
    return invalid_argument("lora_shrink_bf16: bad x/v");
  }
  const int tt = tokens_per_block(p.num_tokens, p.num_segments);
  const int64_t tiles = (p.num_tokens + tt - 1) / tt;
  // Fewer rows per block while the grid is small and a block's rows are
  // big (batch 1, in_dim 4096, rank 16: 2 rows, 16 KiB, per block).
  int rows = kMaxRows;
  while (rows > 1 && tiles * ((p.max_rank + rows - 1) / rows) < kMinBlocks &&
         rows * p.in_dim > kMinRowElems) {
    rows /= 2;
  }
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>((p.max_rank + rows - 1) / rows));
  const int threads = threads_for((p.in_dim + 7 + 7) / 8, 32, kThreads);
  const bool vec = weights_vec(p.in_dim, p.pool, p.page_elems);
  if (tt == kTile) {
    vec ? launch_shrink<kTile, true>(p, grid, threads, rows, stream)
        : launch_shrink<kTile, false>(p, grid, threads, rows, stream);
  } else {
    vec ? launch_shrink<1, true>(p, grid, threads, rows, stream)
        : launch_shrink<1, false>(p, grid, threads, rows, stream);
  }
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
  // Up to 7 columns more than out_dim: the groups of a segment whose Bt rows
  // start at phase ph cover columns [-ph, out_dim).
  const int64_t groups = (p.out_dim + 7 + 7) / 8;
  const int threads = threads_for(groups, 8, kColGroups) * kRankSlices;
  const int64_t chunks = (groups + threads / kRankSlices - 1) / (threads / kRankSlices);
  if (chunks > 65535) return invalid_argument("lora_expand_bf16: out_dim too large");
  const int tt = tokens_per_block(p.num_tokens, p.num_segments);
  const int64_t tiles = (p.num_tokens + tt - 1) / tt;
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks));
  const bool vec = weights_vec(p.out_dim, p.pool, p.page_elems);
  if (tt == kTile) {
    vec ? launch_expand<kTile, true>(p, grid, threads, stream)
        : launch_expand<kTile, false>(p, grid, threads, stream);
  } else {
    vec ? launch_expand<1, true>(p, grid, threads, stream)
        : launch_expand<1, false>(p, grid, threads, stream);
  }
  LS_CUDA_CHECK_LAUNCH();
  return ok_status();
}

}  // namespace loraserve::kernels
