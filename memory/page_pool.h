// PagePool: the bookkeeping of the unified page pool.
//
// The pool's memory is one buffer that the backend allocates once at start
// (device memory for cuda, host memory for cpu) and cuts into `num_pages`
// pages of equal size. This class only hands out page ids: O(1) allocate and
// free from a stack of free ids, an owner kind per page, counts by kind. It
// never touches the buffer, so it is tested without a GPU.
// Not thread-safe: the engine's step loop owns it.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace loraserve {

enum class PageOwner : uint8_t { kFree = 0, kKv = 1, kAdapter = 2 };

struct PagePoolStats {
  int32_t total = 0;
  int32_t free = 0;
  int32_t kv = 0;
  int32_t adapter = 0;
};

class PagePool {
 public:
  explicit PagePool(int32_t num_pages);

  // All-or-nothing: appends `n` page ids to `out`, or RESOURCE_EXHAUSTED and
  // nothing changes.
  Status allocate(int32_t n, PageOwner owner, std::vector<int32_t>* out);
  // INVALID_ARGUMENT (and no change) for an id out of range or already free.
  Status free(int32_t page);
  Status free_all(const std::vector<int32_t>& pages);

  PageOwner owner(int32_t page) const { return owner_[page]; }
  int32_t num_pages() const { return static_cast<int32_t>(owner_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_ids_.size()); }
  PagePoolStats stats() const;

 private:
  std::vector<PageOwner> owner_;
  std::vector<int32_t> free_ids_;  // stack; top is the next page handed out
  int32_t kv_pages_ = 0;
  int32_t adapter_pages_ = 0;
};

}  // namespace loraserve
