#include "memory/kv_page_table.h"

#include <string>

namespace loraserve {

KvPageTable::KvPageTable(PagePool* pool, int32_t page_tokens, int32_t num_layers)
    : pool_(pool), page_tokens_(page_tokens), num_layers_(num_layers) {}

int64_t KvPageTable::capacity_tokens(int64_t seq) const {
  auto it = tables_.find(seq);
  if (it == tables_.end()) return 0;
  return static_cast<int64_t>(it->second.size() / num_layers_) * page_tokens_;
}

int32_t KvPageTable::pages_needed(int64_t seq, int64_t num_tokens) const {
  const int64_t have_blocks = capacity_tokens(seq) / page_tokens_;
  const int64_t need_blocks = (num_tokens + page_tokens_ - 1) / page_tokens_;
  if (need_blocks <= have_blocks) return 0;
  return static_cast<int32_t>((need_blocks - have_blocks) * num_layers_);
}

Status KvPageTable::ensure_capacity(int64_t seq, int64_t num_tokens) {
  const int32_t need = pages_needed(seq, num_tokens);
  if (need == 0) {
    tables_.try_emplace(seq);
    return ok_status();
  }
  std::vector<int32_t> fresh;
  Status s = pool_->allocate(need, PageOwner::kKv, &fresh);
  if (!s.ok()) return s.with_context("KV cache for sequence " + std::to_string(seq));
  auto& table = tables_[seq];
  table.insert(table.end(), fresh.begin(), fresh.end());
  return ok_status();
}

void KvPageTable::release(int64_t seq) {
  auto it = tables_.find(seq);
  if (it == tables_.end()) return;
  // Pages of a table were all allocated as kKv by us; a failure here would be
  // a bookkeeping bug, which free() reports without corrupting the pool.
  (void)pool_->free_all(it->second);
  tables_.erase(it);
}

Status KvPageTable::build_view(const std::vector<int64_t>& seqs, std::vector<int32_t>* indptr,
                               std::vector<int32_t>* page_ids) const {
  indptr->assign(1, 0);
  page_ids->clear();
  for (int64_t seq : seqs) {
    auto it = tables_.find(seq);
    if (it == tables_.end()) return not_found("no KV pages for sequence " + std::to_string(seq));
    page_ids->insert(page_ids->end(), it->second.begin(), it->second.end());
    indptr->push_back(indptr->back() + static_cast<int32_t>(it->second.size() / num_layers_));
  }
  return ok_status();
}

}  // namespace loraserve
