// Where the K/V cache of one layer lives: fixed-size pages of a pool.
//
// A sequence's KV is a list of logical blocks of `page_tokens` tokens. Each
// block owns one page per layer (a block table row holds `num_layers` page
// ids), so the page of layer `l` holding position `pos` of sequence `s` is
//   page_ids[(block_indptr[s] + pos / page_tokens) * num_layers + l]
// and inside a page K rows come first, then V rows:
//   K(pos) = page + (pos % page_tokens) * kv_dim
//   V(pos) = page + page_tokens * kv_dim + (pos % page_tokens) * kv_dim
// with page = pool + page_id * page_stride (elements). This is the CSR page
// table form (indptr/indices) that FlashInfer's paged_kv_t also uses.
#pragma once

#include <cstdint>

namespace loraserve::kernels {

// `T` is the element type of the pool: float (the cpu backend's f32 cache)
// or uint16_t (bf16 bit patterns: the cuda backend's cache on the device,
// cpu-bf16's on the host). page_stride counts elements of T.
template <typename T>
struct PagedKv {
  T* pool = nullptr;                     // base of the page pool
  int64_t page_stride = 0;               // elements between consecutive pages (>= 2*page_tokens*kv_dim)
  int32_t page_tokens = 0;               // tokens per page
  int32_t kv_dim = 0;                    // num_kv_heads * head_dim
  int32_t num_layers = 0;                // page ids per block table row
  int32_t layer = 0;                     // which layer this view addresses
  const int32_t* block_indptr = nullptr; // [num_seqs + 1] into block rows
  const int32_t* page_ids = nullptr;     // [total_blocks, num_layers]
  int32_t num_seqs = 0;

  // Host-side addressing (the device kernels compute the same in place).
  T* k_row(int32_t seq, int64_t pos) const {
    return page_of(seq, pos) + (pos % page_tokens) * kv_dim;
  }
  T* v_row(int32_t seq, int64_t pos) const {
    return page_of(seq, pos) + (static_cast<int64_t>(page_tokens) + pos % page_tokens) * kv_dim;
  }
  int64_t capacity_tokens(int32_t seq) const {
    return static_cast<int64_t>(block_indptr[seq + 1] - block_indptr[seq]) * page_tokens;
  }

 private:
  T* page_of(int32_t seq, int64_t pos) const {
    const int64_t row = block_indptr[seq] + pos / page_tokens;
    return pool + static_cast<int64_t>(page_ids[row * num_layers + layer]) * page_stride;
  }
};

using PagedKvView = PagedKv<float>;
using PagedKvViewBf16 = PagedKv<uint16_t>;

}  // namespace loraserve::kernels
