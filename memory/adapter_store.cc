#include "memory/adapter_store.h"

#include <cstdlib>

namespace loraserve {

HostAllocator HostAllocator::malloc_allocator() {
  HostAllocator a;
  a.allocate = [](size_t bytes) -> void* { return std::aligned_alloc(64, (bytes + 63) / 64 * 64); };
  a.free = [](void* p) { std::free(p); };
  return a;
}

AdapterStore::AdapterStore(HostAllocator allocator) : allocator_(std::move(allocator)) {}

Status AdapterStore::add(std::shared_ptr<const AdapterImage> image) {
  if (!image) return invalid_argument("adapter store: null image");
  std::lock_guard<std::mutex> lock(mu_);
  if (images_.count(image->id)) return Status(StatusCode::kAlreadyExists, "adapter '" + image->id + "' is already registered");
  images_.emplace(image->id, std::move(image));
  return ok_status();
}

StatusOr<std::shared_ptr<const AdapterImage>> AdapterStore::get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = images_.find(id);
  if (it == images_.end()) return not_found("adapter '" + id + "' is not registered");
  return it->second;
}

Status AdapterStore::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (images_.erase(id) == 0) return not_found("adapter '" + id + "' is not registered");
  return ok_status();
}

std::vector<std::string> AdapterStore::ids() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& kv : images_) out.push_back(kv.first);
  return out;
}

size_t AdapterStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return images_.size();
}

size_t AdapterStore::total_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t total = 0;
  for (const auto& kv : images_) total += kv.second->num_bytes();
  return total;
}

}  // namespace loraserve
