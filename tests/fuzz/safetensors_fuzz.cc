// libFuzzer target for the safetensors parser (checkpoint/safetensors.h):
// the input is a whole file, given to SafetensorsFile::from_bytes (the path
// uploads take; open() runs the same parse over an mmap). Checks:
//   - never a crash, hang, leak or UB (ASan/UBSan);
//   - a refusal is DATA_LOSS (corrupt) or INVALID_ARGUMENT (a dtype
//     loraserve cannot read) and names the label;
//   - an accepted file's tensors lie inside it, each of exactly
//     product(shape) x dtype size bytes, and tile the data section.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"

using namespace loraserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string label = "fuzz/adapter_model.safetensors";
  auto f = SafetensorsFile::from_bytes(std::string(reinterpret_cast<const char*>(data), size),
                                       label);
  if (!f.ok()) {
    const StatusCode c = f.status().code();
    if (c != StatusCode::kDataLoss && c != StatusCode::kInvalidArgument) std::abort();
    if (f.status().message().find(label) == std::string::npos) std::abort();
    return 0;
  }
  size_t total = 0;
  uint64_t sum = 0;
  for (const auto& [name, t] : (*f)->tensors()) {
    if (name != t.name || name == "__metadata__") std::abort();
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) std::abort();
      numel *= static_cast<uint64_t>(d);
    }
    if (numel * dtype_size(t.dtype) != t.nbytes) std::abort();
    if (t.nbytes > 0 && t.data == nullptr) std::abort();
    // Reads every byte: ASan reports any tensor reaching outside the buffer.
    const uint8_t* p = static_cast<const uint8_t*>(t.data);
    for (size_t i = 0; i < t.nbytes; ++i) sum += p[i];
    total += t.nbytes;
  }
  if (size < 8 || total > size - 8) std::abort();
  return sum == 0xdeadbeef ? 1 : 0;  // keeps the reads
}
