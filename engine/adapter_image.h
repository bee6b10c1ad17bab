// Converts a validated LoraAdapter into the flat AdapterImage that the
// AdapterStore keeps and the page pool holds: for each layer, for each
// module in LoraModule order, A [rank, in] then Bt [rank, out], in the
// backend's weight dtype. Offsets are recorded per (layer, module) slice.
#pragma once

#include <memory>
#include <string>

#include "common/dtype.h"
#include "common/status.h"
#include "checkpoint/lora_adapter.h"
#include "checkpoint/model_config.h"
#include "memory/adapter_store.h"

namespace loraserve {

// Whether every A and Bt value of the adapter is exactly a bf16 value (it
// came from a bf16 file, or happens to be): a bf16 image then loses nothing.
bool adapter_exact_in_bf16(const LoraAdapter& adapter);

StatusOr<std::shared_ptr<AdapterImage>> make_adapter_image(const std::string& id,
                                                           const LoraAdapter& adapter,
                                                           const ModelConfig& config, DType dtype,
                                                           const HostAllocator& allocator);

}  // namespace loraserve
