// KvPageTable: which pages hold each sequence's KV cache.
//
// A sequence grows in blocks of `page_tokens` tokens; a block takes one page
// per layer from the PagePool (so a block table row has `num_layers` ids).
// ensure_capacity() adds blocks as the sequence grows; release() returns all
// of a sequence's pages at once. build_view() flattens the tables of the
// sequences in a batch into the CSR form the attention kernels read
// (kernels/attention/paged_kv.h). Not thread-safe: owned by the step loop.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "memory/page_pool.h"

namespace loraserve {

class KvPageTable {
 public:
  KvPageTable(PagePool* pool, int32_t page_tokens, int32_t num_layers);

  // Makes sequence `seq` own enough blocks for `num_tokens` tokens.
  // All-or-nothing; RESOURCE_EXHAUSTED when the pool is short.
  Status ensure_capacity(int64_t seq, int64_t num_tokens);
  // Pages needed to grow `seq` (possibly new) to `num_tokens` tokens.
  int32_t pages_needed(int64_t seq, int64_t num_tokens) const;
  // Frees every page of `seq`; unknown ids are a no-op.
  void release(int64_t seq);

  bool contains(int64_t seq) const { return tables_.count(seq) != 0; }
  int64_t capacity_tokens(int64_t seq) const;
  int32_t page_tokens() const { return page_tokens_; }
  int32_t num_layers() const { return num_layers_; }
  size_t num_sequences() const { return tables_.size(); }

  // CSR block table for `seqs` in order: indptr [n+1] counts blocks,
  // page_ids [blocks * num_layers]. NOT_FOUND for an unknown sequence.
  Status build_view(const std::vector<int64_t>& seqs, std::vector<int32_t>* indptr,
                    std::vector<int32_t>* page_ids) const;

 private:
  PagePool* pool_;
  int32_t page_tokens_;
  int32_t num_layers_;
  std::unordered_map<int64_t, std::vector<int32_t>> tables_;  // seq -> [blocks * layers]
};

}  // namespace loraserve
