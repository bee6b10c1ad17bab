// Internals shared by the bf16 attention kernels (one file per algorithm,
// as ggml's fattn-tile / fattn-vec / fattn-wmma): the paged KV addressing,
// the `linked` predicate that splits a batch between the tile kernels and
// the per-token kernel, the tile windows both tile kernels walk, and the
// launchers the dispatcher (attention_bf16.cu) calls. The design note is in
// attention_bf16.cu.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/cuda_check.h"
#include "kernels/attention/attention.h"
#include "kernels/cuda_util.cuh"

namespace loraserve::kernels::attention_detail {

constexpr int kMaxHeadDim = 256;
constexpr int kTileThreads = 128;  // 8 row groups (ty) x 16 columns (tx)
constexpr size_t kSmemLimit = 48 * 1024;

constexpr size_t align16(size_t b) { return (b + 15) / 16 * 16; }

__device__ __forceinline__ uint16_t* page_base(const PagedKvViewBf16& kv, int32_t seq, int64_t pos) {
  const int64_t row = kv.block_indptr[seq] + pos / kv.page_tokens;
  return kv.pool + static_cast<int64_t>(kv.page_ids[row * kv.num_layers + kv.layer]) * kv.page_stride;
}

// Token b follows token a in one run (see the design note). The one
// definition both kernels use to split the batch between them.
__device__ __forceinline__ bool linked(int32_t seq_a, int32_t pos_a, int32_t seq_b, int32_t pos_b) {
  return seq_a == seq_b && pos_b == pos_a + 1;
}

struct TileArgs {
  const uint16_t* q;
  uint16_t* out;
  const int32_t* token_seq;
  const int32_t* positions;
  int64_t num_tokens;
  int32_t num_q_heads;
  int32_t group;            // q heads per kv head
  int32_t head_dim;
  int32_t heads_per_block;  // hpb
  int32_t splits;           // blocks per GQA group (grid.y = num_kv_heads * splits)
  int32_t window;           // W = rows / hpb tokens
  float scale_log2;         // scale * log2(e): softmax in exp2
  int32_t vec8;             // K/V rows are 16-byte aligned: 8-element loads
  PagedKvViewBf16 kv;
};

// Two bf16 from 4-byte aligned memory, as floats.
__device__ __forceinline__ float2 ld_bf16x2(const uint16_t* p) {
  const uint32_t w = *reinterpret_cast<const uint32_t*>(p);
  return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}

// A tile block's window of token indices [w0, w1) with one neighbour each
// side in shared memory, cut into pieces: maximal runs of linked tokens
// (see `linked`). Both tile kernels walk the same pieces with uniform
// control flow; isolated tokens are the per-token kernel's.
struct TileWindow {
  int64_t w0, w1;
  int32_t* seq;  // [W + 2]: tokens w0 - 1 .. w1 (seq -1 outside the batch)
  int32_t* pos;

  // Loads the window; contains __syncthreads (call from every thread).
  __device__ void load(const TileArgs& a, int32_t* s_seq, int32_t* s_pos) {
    seq = s_seq;
    pos = s_pos;
    w0 = static_cast<int64_t>(blockIdx.x) * a.window;
    w1 = min(a.num_tokens, w0 + a.window);
    for (int64_t i = threadIdx.x; i < w1 - w0 + 2; i += kTileThreads) {
      const int64_t t = w0 - 1 + i;
      const bool in = t >= 0 && t < a.num_tokens;
      seq[i] = in ? a.token_seq[t] : -1;
      pos[i] = in ? a.positions[t] : 0;
    }
    __syncthreads();
  }
  // Is batch token t linked to t - 1?
  __device__ bool link(int64_t t) const {
    const int64_t i = t - w0 + 1;
    return linked(seq[i - 1], pos[i - 1], seq[i], pos[i]);
  }
  // The piece starting at t0 ends before the returned index; `isolated`
  // when it is a lone token linked to neither neighbour.
  __device__ int64_t piece_end(int64_t t0, bool* isolated) const {
    int64_t t1 = t0 + 1;
    while (t1 < w1 && link(t1)) ++t1;
    *isolated = t1 == t0 + 1 && !link(t0) && !link(t0 + 1);
    return t1;
  }
  __device__ int32_t seq_of(int64_t t) const { return seq[t - w0 + 1]; }
  __device__ int32_t pos_of(int64_t t) const { return pos[t - w0 + 1]; }
};

// Kernel arguments for tiles of `rows` (token, head) rows, and their grid.
TileArgs tile_args(const AttentionBf16Params& p, int rows);
dim3 tile_grid(const AttentionBf16Params& p, const TileArgs& a);

// The algorithms. Each launches nothing for tokens that are not its own.
// Runs of linked tokens, SIMT tiles (any head_dim <= 256).
Status launch_attention_tile_simt(const AttentionBf16Params& p, cudaStream_t stream);
// Runs of linked tokens on tensor cores (head_dim % 16 == 0).
Status launch_attention_tile_wmma(const AttentionBf16Params& p, cudaStream_t stream);
// Isolated (decode) tokens, one block per (token, q head).
Status launch_attention_decode(const AttentionBf16Params& p, cudaStream_t stream);

}  // namespace loraserve::kernels::attention_detail
