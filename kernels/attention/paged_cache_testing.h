// Test support: a paged KV cache of shuffled pages over `num_layers` layers,
// with padding between pages; the view addresses layer 1 so that the
// per-layer column of the block table is exercised. Unwritten elements are
// NaN (0xffff as bf16 bits), so reading anything attention should not read
// poisons the result. T is float or uint16_t (bf16), as in PagedKv<T>.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/attention/paged_kv.h"

namespace loraserve::kernels::testing_util {

template <typename T>
struct PagedCacheOf {
  int32_t page_tokens = 4;
  int32_t num_layers = 2;
  int32_t layer = 1;
  int32_t kv_dim = 0;
  int64_t page_stride = 0;
  std::vector<T> pool;
  std::vector<int32_t> block_indptr;
  std::vector<int32_t> page_ids;

  static T poison() {
    if constexpr (sizeof(T) == 2) {
      return T(0xffff);
    } else {
      return std::numeric_limits<T>::quiet_NaN();
    }
  }

  PagedCacheOf(const std::vector<int32_t>& blocks_per_seq, int32_t kv_dim_in, uint32_t seed)
      : kv_dim(kv_dim_in) {
    page_stride = 2 * page_tokens * kv_dim + 5;  // padding between pages
    block_indptr.push_back(0);
    for (int32_t b : blocks_per_seq) block_indptr.push_back(block_indptr.back() + b);
    const int32_t needed = block_indptr.back() * num_layers;
    std::vector<int32_t> ids(needed + 3);  // a few pages stay free
    std::iota(ids.begin(), ids.end(), 0);
    std::mt19937 rng(seed);
    std::shuffle(ids.begin(), ids.end(), rng);
    page_ids.assign(ids.begin(), ids.begin() + needed);
    pool.assign(ids.size() * page_stride, poison());
  }

  PagedKv<T> view() {
    PagedKv<T> v;
    v.pool = pool.data();
    v.page_stride = page_stride;
    v.page_tokens = page_tokens;
    v.kv_dim = kv_dim;
    v.num_layers = num_layers;
    v.layer = layer;
    v.block_indptr = block_indptr.data();
    v.page_ids = page_ids.data();
    v.num_seqs = static_cast<int32_t>(block_indptr.size()) - 1;
    return v;
  }

  // The header's addressing formula, written out independently of PagedKv.
  T* k_at(int32_t seq, int32_t pos) {
    const int32_t page = page_ids[(block_indptr[seq] + pos / page_tokens) * num_layers + layer];
    return pool.data() + page * page_stride + (pos % page_tokens) * kv_dim;
  }
  T* v_at(int32_t seq, int32_t pos) { return k_at(seq, pos) + page_tokens * kv_dim; }
};

}  // namespace loraserve::kernels::testing_util
