#include "memory/page_pool.h"

#include <string>

namespace loraserve {

PagePool::PagePool(int32_t num_pages) : owner_(num_pages < 0 ? 0 : num_pages, PageOwner::kFree) {
  free_ids_.reserve(owner_.size());
  // Push in reverse so page 0 is handed out first: easier to read in tests.
  for (int32_t i = num_pages - 1; i >= 0; --i) free_ids_.push_back(i);
}

Status PagePool::allocate(int32_t n, PageOwner owner, std::vector<int32_t>* out) {
  if (owner == PageOwner::kFree) return invalid_argument("cannot allocate pages as kFree");
  if (n < 0) return invalid_argument("negative page count");
  if (n > num_free()) {
    return resource_exhausted("page pool: " + std::to_string(n) + " pages requested, " +
                              std::to_string(num_free()) + " free of " +
                              std::to_string(num_pages()));
  }
  for (int32_t i = 0; i < n; ++i) {
    const int32_t id = free_ids_.back();
    free_ids_.pop_back();
    owner_[id] = owner;
    out->push_back(id);
  }
  (owner == PageOwner::kKv ? kv_pages_ : adapter_pages_) += n;
  return ok_status();
}

Status PagePool::free(int32_t page) {
  if (page < 0 || page >= num_pages()) {
    return invalid_argument("page id " + std::to_string(page) + " out of range");
  }
  if (owner_[page] == PageOwner::kFree) {
    return invalid_argument("page " + std::to_string(page) + " freed twice");
  }
  (owner_[page] == PageOwner::kKv ? kv_pages_ : adapter_pages_) -= 1;
  owner_[page] = PageOwner::kFree;
  free_ids_.push_back(page);
  return ok_status();
}

Status PagePool::free_all(const std::vector<int32_t>& pages) {
  // Freed in reverse so the stack hands them out again in their old order:
  // an adapter swapped back in gets runs of consecutive pages (fewer copies).
  Status first;
  for (auto it = pages.rbegin(); it != pages.rend(); ++it) {
    Status s = free(*it);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

PagePoolStats PagePool::stats() const {
  PagePoolStats s;
  s.total = num_pages();
  s.free = num_free();
  s.kv = kv_pages_;
  s.adapter = adapter_pages_;
  return s;
}

}  // namespace loraserve
