// AdapterStore: every registered adapter's weights in host memory.
//
// Each adapter is converted once, when it is registered, into one flat
// "image" in the layout the LoRA kernels read and in the backend's weight
// dtype: per (layer, module) the A rows [rank, in] then the Bt rows
// [rank, out], concatenated. When the adapter is made resident the image is
// copied page by page into the unified pool, so a kernel finds element e of
// the image at page_ids[e / page_elems] + e % page_elems (see
// kernels/lora/lora_paged.h). Host memory comes from a HostAllocator so the
// cuda backend can hand out pinned memory (faster, asynchronous copies).
//
// Thread-safe: registration happens on API threads while the step loop
// reads images; a mutex guards the map, and images are immutable and
// shared, so a reader keeps one alive even if it is unregistered meanwhile.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace loraserve {

// Allocates and frees host memory for adapter images (pinned for cuda).
struct HostAllocator {
  std::function<void*(size_t)> allocate;
  std::function<void(void*)> free;
  static HostAllocator malloc_allocator();
};

// One adapted (layer, module): offsets in elements into the image.
struct LoraSlice {
  int32_t rank = 0;     // 0: this module is not adapted in this layer
  float scale = 0.0f;
  int64_t a_offset = 0;   // A [rank, in_dim]
  int64_t bt_offset = 0;  // Bt [rank, out_dim]
};

struct AdapterImage {
  std::string id;
  DType dtype = DType::kF32;
  int64_t num_layers = 0;
  int32_t num_modules = 0;
  std::vector<LoraSlice> slices;  // [num_layers * num_modules]
  int32_t max_rank = 0;
  uint32_t module_mask = 0;
  std::vector<std::string> target_modules;
  int64_t num_elems = 0;          // image length in elements
  void* data = nullptr;           // num_elems * dtype_size bytes, from the allocator
  std::function<void(void*)> free_data;
  // Set when `data` is another image's identical bytes (the same adapter
  // registered under several ids): that image stays alive while this one does.
  std::shared_ptr<const AdapterImage> data_owner;

  AdapterImage() = default;
  AdapterImage(const AdapterImage&) = delete;
  AdapterImage& operator=(const AdapterImage&) = delete;
  ~AdapterImage() {
    if (data && free_data) free_data(data);
  }
  size_t num_bytes() const { return static_cast<size_t>(num_elems) * dtype_size(dtype); }
  const LoraSlice& slice(int64_t layer, int32_t module) const {
    return slices[layer * num_modules + module];
  }
  // Same layout and bytes (what a kernel would read), ids aside.
  bool same_weights(const AdapterImage& other) const;
  // Frees this image's own bytes and reads `twin`'s instead; `twin` must
  // have the same weights.
  void share_bytes_of(std::shared_ptr<const AdapterImage> twin);
};

class AdapterStore {
 public:
  explicit AdapterStore(HostAllocator allocator);

  const HostAllocator& allocator() const { return allocator_; }
  // ALREADY_EXISTS when the id is taken. An image whose weights equal a
  // stored one's shares that one's host bytes (users register one adapter
  // under several ids, and benchmarks thousands of ids over a few files);
  // pool residency stays per id.
  Status add(std::shared_ptr<AdapterImage> image);
  // NOT_FOUND for an unknown id.
  StatusOr<std::shared_ptr<const AdapterImage>> get(const std::string& id) const;
  Status remove(const std::string& id);
  std::vector<std::string> ids() const;
  size_t size() const;
  // Host bytes held: shared bytes count once.
  size_t total_bytes() const;

 private:
  HostAllocator allocator_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const AdapterImage>> images_;  // guarded by mu_
};

}  // namespace loraserve
