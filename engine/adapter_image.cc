#include "engine/adapter_image.h"

#include <cstring>

namespace loraserve {

namespace {
bool exact_in_bf16(const std::vector<float>& v) {
  for (const float x : v) {
    if (bf16_to_f32(f32_to_bf16(x)) != x) return false;
  }
  return true;
}
}  // namespace

bool adapter_exact_in_bf16(const LoraAdapter& adapter) {
  for (int64_t l = 0; l < adapter.num_layers(); ++l) {
    for (int m = 0; m < kNumLoraModules; ++m) {
      const LoraWeights& w = adapter.weights(l, static_cast<LoraModule>(m));
      if (!exact_in_bf16(w.a) || !exact_in_bf16(w.bt)) return false;
    }
  }
  return true;
}

StatusOr<std::shared_ptr<AdapterImage>> make_adapter_image(const std::string& id,
                                                           const LoraAdapter& adapter,
                                                           const ModelConfig& config, DType dtype,
                                                           const HostAllocator& allocator) {
  if (adapter.num_layers() != config.num_hidden_layers) {
    return failed_precondition("adapter '" + id + "' has " + std::to_string(adapter.num_layers()) +
                               " layers, the model " + std::to_string(config.num_hidden_layers));
  }
  auto image = std::make_shared<AdapterImage>();
  image->id = id;
  image->dtype = dtype;
  image->num_layers = config.num_hidden_layers;
  image->num_modules = kNumLoraModules;
  image->slices.resize(static_cast<size_t>(image->num_layers) * kNumLoraModules);
  image->max_rank = adapter.max_rank();
  image->module_mask = adapter.module_mask();
  for (int m = 0; m < kNumLoraModules; ++m) {
    if (adapter.module_mask() & (1u << m)) {
      image->target_modules.push_back(lora_module_name(static_cast<LoraModule>(m)));
    }
  }
  // First pass: offsets.
  int64_t offset = 0;
  for (int64_t l = 0; l < image->num_layers; ++l) {
    for (int m = 0; m < kNumLoraModules; ++m) {
      const LoraModule mod = static_cast<LoraModule>(m);
      const LoraWeights& w = adapter.weights(l, mod);
      LoraSlice& s = image->slices[l * kNumLoraModules + m];
      if (w.rank == 0) continue;
      s.rank = w.rank;
      s.scale = w.scale;
      s.a_offset = offset;
      offset += static_cast<int64_t>(w.rank) * lora_module_in_dim(config, mod);
      s.bt_offset = offset;
      offset += static_cast<int64_t>(w.rank) * lora_module_out_dim(config, mod);
    }
  }
  image->num_elems = offset;
  if (offset == 0) return invalid_argument("adapter '" + id + "' adapts no module");
  image->data = allocator.allocate(image->num_bytes());
  if (image->data == nullptr) {
    return resource_exhausted("adapter '" + id + "': cannot allocate " +
                              std::to_string(image->num_bytes()) + " host bytes");
  }
  image->free_data = allocator.free;
  // Second pass: convert into place.
  char* base = static_cast<char*>(image->data);
  const size_t esize = dtype_size(dtype);
  for (int64_t l = 0; l < image->num_layers; ++l) {
    for (int m = 0; m < kNumLoraModules; ++m) {
      const LoraWeights& w = adapter.weights(l, static_cast<LoraModule>(m));
      const LoraSlice& s = image->slices[l * kNumLoraModules + m];
      if (s.rank == 0) continue;
      convert_from_f32(dtype, w.a.data(), base + s.a_offset * esize, w.a.size());
      convert_from_f32(dtype, w.bt.data(), base + s.bt_offset * esize, w.bt.size());
    }
  }
  return image;
}

}  // namespace loraserve
