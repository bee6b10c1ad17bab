// AdapterCache: which adapters are resident in the unified page pool.
//
// acquire() makes an adapter resident (copying its image from the host
// store into pool pages through a PoolWriter: a plain copy on cpu, an
// asynchronous copy on a separate stream on cuda) and pins it with a
// reference count; release() unpins. Idle (unpinned) residents stay cached
// and are evicted least-recently-used first when pages are needed, by
// adapters or by the KV cache; a pinned adapter is never evicted. "Pool
// full" is an expected outcome: RESOURCE_EXHAUSTED, with nothing changed.
// Not thread-safe: the engine's step loop owns it (as it owns the PagePool).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "memory/adapter_store.h"
#include "memory/page_pool.h"

namespace loraserve {

// Copies host bytes into pool pages; implemented by each backend.
class PoolWriter {
 public:
  virtual ~PoolWriter() = default;
  // Page pages[i] receives bytes [i * page_bytes, (i + 1) * page_bytes) of
  // src (the last page possibly partly). May be asynchronous as long as
  // later compute on the pool sees the data (the cuda backend orders its
  // compute stream after the copy stream).
  virtual Status write_pages(const std::vector<int32_t>& pages, const void* src, size_t bytes) = 0;
};

struct ResidentAdapter {
  std::shared_ptr<const AdapterImage> image;
  std::vector<int32_t> pages;  // the image in order, page_bytes per page
  int32_t pins = 0;
};

enum class Residency { kMissing, kResident, kPinned };

struct AdapterCacheStats {
  int32_t resident = 0;
  int32_t pinned = 0;
  int64_t swap_ins = 0;
  int64_t evictions = 0;
  int64_t bytes_copied = 0;
  int64_t prefetches = 0;
};

// What admitting a request would take; see AdapterCache::plan_admission.
struct AdmissionPlan {
  bool admissible = false;
  int32_t kv_pages = 0;       // pages the prompt's KV needs
  int32_t adapter_pages = 0;  // pages to swap the adapter in (0 when resident)
  int32_t free_pages = 0;     // free now
  std::vector<std::string> evictions;  // idle adapters that would be evicted, LRU first
};

class AdapterCache {
 public:
  AdapterCache(PagePool* pool, int64_t page_bytes, PoolWriter* writer);

  // Resident and pinned on success. RESOURCE_EXHAUSTED when even evicting
  // every idle adapter would not free enough pages.
  StatusOr<const ResidentAdapter*> acquire(std::shared_ptr<const AdapterImage> image);
  // Unpins once. FAILED_PRECONDITION when the adapter is not pinned.
  Status release(const std::string& id);
  // Brings an adapter in ahead of its turn without pinning it, using free
  // pages only (a prefetch never evicts). OK and no-op when already resident;
  // RESOURCE_EXHAUSTED when the free pages do not suffice.
  Status prefetch(std::shared_ptr<const AdapterImage> image);
  // Evicts idle adapters, least recently used first, until at least `pages`
  // pages are free or nothing idle is left. Returns the number of free pages.
  int32_t make_free(int32_t pages);
  // Forgets an idle adapter (unregistration). FAILED_PRECONDITION while
  // pinned; OK when not resident.
  Status drop(const std::string& id);

  Residency residency(const std::string& id) const;
  const ResidentAdapter* find(const std::string& id) const;
  int32_t pages_for(const AdapterImage& image) const;
  // Pages held by idle residents (what make_free could reclaim).
  int32_t evictable_pages() const;
  int64_t page_bytes() const { return page_bytes_; }

  // Can a request whose prompt needs `kv_pages` KV pages and that uses
  // `image` (null: no adapter) be admitted now, and which idle adapters
  // would have to go? Never evicts the request's own adapter.
  AdmissionPlan plan_admission(int32_t kv_pages, const AdapterImage* image) const;

  AdapterCacheStats stats() const;
  std::vector<std::string> resident_ids() const;
  // Incremented whenever an adapter is swapped in or leaves the pool.
  uint64_t residency_version() const { return residency_version_; }

 private:
  struct Entry {
    ResidentAdapter adapter;
    std::list<std::string>::iterator lru_pos;  // valid while idle
  };
  Status swap_in(std::shared_ptr<const AdapterImage> image, bool allow_evict, Entry** out);
  void evict(const std::string& id);

  PagePool* pool_;
  int64_t page_bytes_;
  PoolWriter* writer_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> idle_lru_;  // front = least recently used
  AdapterCacheStats stats_;
  uint64_t residency_version_ = 0;
};

}  // namespace loraserve
