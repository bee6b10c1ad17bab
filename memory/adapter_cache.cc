#include "memory/adapter_cache.h"

namespace loraserve {

AdapterCache::AdapterCache(PagePool* pool, int64_t page_bytes, PoolWriter* writer)
    : pool_(pool), page_bytes_(page_bytes), writer_(writer) {}

int32_t AdapterCache::pages_for(const AdapterImage& image) const {
  return static_cast<int32_t>((static_cast<int64_t>(image.num_bytes()) + page_bytes_ - 1) /
                              page_bytes_);
}

int32_t AdapterCache::evictable_pages() const {
  int32_t n = 0;
  for (const std::string& id : idle_lru_) {
    n += static_cast<int32_t>(entries_.at(id).adapter.pages.size());
  }
  return n;
}

void AdapterCache::evict(const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.adapter.pins > 0) return;
  idle_lru_.erase(it->second.lru_pos);
  // The pages were allocated by swap_in as kAdapter; free cannot fail here.
  (void)pool_->free_all(it->second.adapter.pages);
  entries_.erase(it);
  stats_.evictions += 1;
  residency_version_ += 1;
}

int32_t AdapterCache::make_free(int32_t pages) {
  while (pool_->num_free() < pages && !idle_lru_.empty()) evict(idle_lru_.front());
  return pool_->num_free();
}

Status AdapterCache::swap_in(std::shared_ptr<const AdapterImage> image, bool allow_evict,
                             Entry** out) {
  const int32_t need = pages_for(*image);
  if (pool_->num_free() < need) {
    if (!allow_evict || pool_->num_free() + evictable_pages() < need) {
      return resource_exhausted("adapter '" + image->id + "' needs " + std::to_string(need) +
                                " pages; " + std::to_string(pool_->num_free()) + " free, " +
                                std::to_string(allow_evict ? evictable_pages() : 0) +
                                " held by idle adapters");
    }
    make_free(need);
  }
  std::vector<int32_t> pages;
  LS_RETURN_IF_ERROR(pool_->allocate(need, PageOwner::kAdapter, &pages));
  Status copied = writer_->write_pages(pages, image->data, image->num_bytes());
  if (!copied.ok()) {
    (void)pool_->free_all(pages);
    return copied.with_context("copying adapter '" + image->id + "' into the pool");
  }
  stats_.swap_ins += 1;
  residency_version_ += 1;
  stats_.bytes_copied += static_cast<int64_t>(image->num_bytes());
  Entry& e = entries_[image->id];
  e.adapter.image = std::move(image);
  e.adapter.pages = std::move(pages);
  e.adapter.pins = 0;
  e.lru_pos = idle_lru_.insert(idle_lru_.end(), e.adapter.image->id);
  *out = &e;
  return ok_status();
}

StatusOr<const ResidentAdapter*> AdapterCache::acquire(std::shared_ptr<const AdapterImage> image) {
  if (!image) return invalid_argument("adapter cache: null image");
  auto it = entries_.find(image->id);
  Entry* e = nullptr;
  if (it != entries_.end()) {
    e = &it->second;
  } else {
    LS_RETURN_IF_ERROR(swap_in(std::move(image), /*allow_evict=*/true, &e));
  }
  if (e->adapter.pins == 0) idle_lru_.erase(e->lru_pos);
  e->adapter.pins += 1;
  return &e->adapter;
}

Status AdapterCache::release(const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.adapter.pins == 0) {
    return failed_precondition("adapter '" + id + "' is not pinned");
  }
  Entry& e = it->second;
  e.adapter.pins -= 1;
  if (e.adapter.pins == 0) e.lru_pos = idle_lru_.insert(idle_lru_.end(), id);
  return ok_status();
}

Status AdapterCache::prefetch(std::shared_ptr<const AdapterImage> image) {
  if (!image) return invalid_argument("adapter cache: null image");
  if (entries_.count(image->id)) return ok_status();
  Entry* e = nullptr;
  LS_RETURN_IF_ERROR(swap_in(std::move(image), /*allow_evict=*/false, &e));
  stats_.prefetches += 1;
  return ok_status();
}

Status AdapterCache::drop(const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return ok_status();
  if (it->second.adapter.pins > 0) {
    return failed_precondition("adapter '" + id + "' is in use by " +
                               std::to_string(it->second.adapter.pins) + " request(s)");
  }
  evict(id);
  stats_.evictions -= 1;  // an unregistration is not a capacity eviction
  return ok_status();
}

Residency AdapterCache::residency(const std::string& id) const {
  auto it = entries_.find(id);
  if (it == entries_.end()) return Residency::kMissing;
  return it->second.adapter.pins > 0 ? Residency::kPinned : Residency::kResident;
}

const ResidentAdapter* AdapterCache::find(const std::string& id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second.adapter;
}

AdmissionPlan AdapterCache::plan_admission(int32_t kv_pages, const AdapterImage* image) const {
  AdmissionPlan plan;
  plan.kv_pages = kv_pages;
  plan.free_pages = pool_->num_free();
  if (image != nullptr && entries_.count(image->id) == 0) plan.adapter_pages = pages_for(*image);
  int32_t have = plan.free_pages;
  const int32_t need = plan.kv_pages + plan.adapter_pages;
  for (auto it = idle_lru_.begin(); have < need && it != idle_lru_.end(); ++it) {
    if (image != nullptr && *it == image->id) continue;  // using it, not evicting it
    have += static_cast<int32_t>(entries_.at(*it).adapter.pages.size());
    plan.evictions.push_back(*it);
  }
  plan.admissible = have >= need;
  if (!plan.admissible) plan.evictions.clear();
  return plan;
}

AdapterCacheStats AdapterCache::stats() const {
  AdapterCacheStats s = stats_;
  s.resident = static_cast<int32_t>(entries_.size());
  s.pinned = 0;
  for (const auto& kv : entries_) s.pinned += kv.second.adapter.pins > 0 ? 1 : 0;
  return s;
}

std::vector<std::string> AdapterCache::resident_ids() const {
  std::vector<std::string> out;
  for (const auto& kv : entries_) out.push_back(kv.first);
  return out;
}

}  // namespace loraserve
