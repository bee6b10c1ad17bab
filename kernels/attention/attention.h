// Causal attention with grouped-query heads over a paged KV cache.
//
// One op serves prefill, decode and chunked prefill alike: the batch is a
// flat list of tokens, each tagged with its sequence and position; a token
// at position p attends to positions 0..p of its own sequence, all of which
// must already be in the cache (kv_append_ref for the batch runs first).
#pragma once

#include <cstdint>

#include "common/status.h"
#include "kernels/attention/paged_kv.h"

namespace loraserve::kernels {

// `KvT` is the cache's element type (paged_kv.h): float, or uint16_t for
// a bf16 cache that the cpu-bf16 backend fills from f32 rows.
template <typename KvT>
struct KvAppendParamsOver {
  const float* k = nullptr;            // [num_tokens, kv_dim]
  const float* v = nullptr;            // [num_tokens, kv_dim]
  const int32_t* token_seq = nullptr;  // [num_tokens] sequence index in the view
  const int32_t* positions = nullptr;  // [num_tokens]
  int64_t num_tokens = 0;
  PagedKv<KvT> kv;
};
using KvAppendParams = KvAppendParamsOver<float>;
using KvAppendBf16KvParams = KvAppendParamsOver<uint16_t>;

// Writes each token's K/V row at its position. OUT_OF_RANGE when a position
// is beyond the pages the sequence owns.
Status kv_append_ref(const KvAppendParams& p);

template <typename KvT>
struct AttentionParamsOver {
  const float* q = nullptr;            // [num_tokens, num_q_heads * head_dim] (rope applied)
  float* out = nullptr;                // [num_tokens, num_q_heads * head_dim]
  const int32_t* token_seq = nullptr;  // [num_tokens]
  const int32_t* positions = nullptr;  // [num_tokens]
  int64_t num_tokens = 0;
  int64_t num_q_heads = 0;
  int64_t num_kv_heads = 0;  // divides num_q_heads; q head h reads kv head h / (nq / nkv)
  int64_t head_dim = 0;
  float scale = 0.0f;        // softmax scale, normally 1/sqrt(head_dim)
  PagedKv<KvT> kv;
};
using AttentionParams = AttentionParamsOver<float>;
// f32 queries and output over a bf16 cache (cpu-bf16's default).
using AttentionBf16KvParams = AttentionParamsOver<uint16_t>;

// out = softmax(q K^T * scale over positions 0..p) V, per token and head, in fp32.
Status attention_ref(const AttentionParams& p);

// The checks attention_ref makes (heads, view, every token's sequence and
// position), for kernels that run slices of the tokens (attention_cpu).
template <typename KvT>
Status validate_attention(const AttentionParamsOver<KvT>& p);
// The checks kv_append_ref makes.
template <typename KvT>
Status validate_kv_append(const KvAppendParamsOver<KvT>& p);

// attention_ref's arithmetic (same order of operations per head, f32) with
// vectorised dot products and a running-max softmax over the KV rows, for
// the tokens [t_begin, t_end) only: threads take disjoint token ranges.
// Over a bf16 cache each K/V element is widened to f32 exactly, so the
// result is attention_ref's over the rounded cache.
// `isa` is a kernels::CpuIsa (gemm_bf16.h) as an int, to keep this header
// free of it. The caller validates the whole batch once.
template <typename KvT>
void attention_cpu_tokens(const AttentionParamsOver<KvT>& p, int isa, int64_t t_begin,
                          int64_t t_end);

// kv_append into a bf16 cache: each K/V value rounded to nearest even, as
// torch's .to(torch.bfloat16) rounds. Validates like kv_append_ref.
Status kv_append_bf16kv_cpu(const KvAppendBf16KvParams& p, int isa);

}  // namespace loraserve::kernels

#ifdef LORASERVE_WITH_CUDA
#include <cuda_runtime.h>
namespace loraserve::kernels {
// bf16 versions (uint16_t bit patterns, device pointers). Sequences,
// positions and page ids are NOT checked on the device: the caller checks
// them on the host first (the cuda backend does so in begin_step), exactly
// as kv_append_ref / attention_ref would.
struct KvAppendBf16Params {
  const uint16_t* k = nullptr;         // [num_tokens, kv_dim]
  const uint16_t* v = nullptr;         // [num_tokens, kv_dim]
  const int32_t* token_seq = nullptr;  // [num_tokens]
  const int32_t* positions = nullptr;  // [num_tokens]
  int64_t num_tokens = 0;
  PagedKvViewBf16 kv;
};
Status launch_kv_append_bf16(const KvAppendBf16Params& p, cudaStream_t stream);

// Causal paged attention over a batch mixing prefill, chunked prefill and
// decode: each token attends to positions 0..pos of its sequence, fp32
// accumulation, head_dim <= 256. Runs of consecutive tokens of one sequence
// (prefill chunks) go through a tiled kernel that shares each K/V block
// across the run and the GQA group; lone tokens (decode) through a block per
// (token, q head). The split is decided on the device from token_seq and
// positions (attention_bf16.cu). `out` may alias `q`.
struct AttentionBf16Params {
  const uint16_t* q = nullptr;         // [num_tokens, num_q_heads * head_dim] (rope applied)
  uint16_t* out = nullptr;             // [num_tokens, num_q_heads * head_dim]
  const int32_t* token_seq = nullptr;  // [num_tokens]
  const int32_t* positions = nullptr;  // [num_tokens]
  int64_t num_tokens = 0;
  int64_t num_q_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  float scale = 0.0f;
  PagedKvViewBf16 kv;
};
Status launch_attention_bf16(const AttentionBf16Params& p, cudaStream_t stream);
}  // namespace loraserve::kernels
#endif
