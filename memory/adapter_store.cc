#include "memory/adapter_store.h"

#include <cstdlib>
#include <cstring>
#include <set>

namespace loraserve {

HostAllocator HostAllocator::malloc_allocator() {
  HostAllocator a;
  a.allocate = [](size_t bytes) -> void* { return std::aligned_alloc(64, (bytes + 63) / 64 * 64); };
  a.free = [](void* p) { std::free(p); };
  return a;
}

AdapterStore::AdapterStore(HostAllocator allocator) : allocator_(std::move(allocator)) {}

bool AdapterImage::same_weights(const AdapterImage& o) const {
  if (dtype != o.dtype || num_layers != o.num_layers || num_modules != o.num_modules ||
      num_elems != o.num_elems || slices.size() != o.slices.size()) {
    return false;
  }
  for (size_t i = 0; i < slices.size(); ++i) {
    const LoraSlice &a = slices[i], &b = o.slices[i];
    if (a.rank != b.rank || a.scale != b.scale || a.a_offset != b.a_offset ||
        a.bt_offset != b.bt_offset) {
      return false;
    }
  }
  return data == o.data || std::memcmp(data, o.data, num_bytes()) == 0;
}

void AdapterImage::share_bytes_of(std::shared_ptr<const AdapterImage> twin) {
  if (data && free_data) free_data(data);
  free_data = nullptr;
  // Point at the image that owns the bytes, not at another sharer.
  data_owner = twin->data_owner ? twin->data_owner : std::move(twin);
  data = data_owner->data;
}

Status AdapterStore::add(std::shared_ptr<AdapterImage> image) {
  if (!image) return invalid_argument("adapter store: null image");
  std::lock_guard<std::mutex> lock(mu_);
  if (images_.count(image->id)) return Status(StatusCode::kAlreadyExists, "adapter '" + image->id + "' is already registered");
  // A linear scan: the size check is cheap, and memcmp of different
  // weights stops at once.
  for (const auto& kv : images_) {
    const AdapterImage& other = *kv.second;
    if (other.num_elems == image->num_elems && image->same_weights(other)) {
      image->share_bytes_of(kv.second);
      break;
    }
  }
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
  std::set<const void*> counted;
  for (const auto& kv : images_) {
    if (counted.insert(kv.second->data).second) total += kv.second->num_bytes();
  }
  return total;
}

}  // namespace loraserve
