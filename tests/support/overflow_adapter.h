// An adapter that passes every load check but makes its requests' logits
// non-finite: a copy of a PEFT adapter with every lora_A/lora_B element set
// to 1e30 (finite in bf16/f16-free f32 and bf16; the scale is untouched).
// x A^T is then ~1e31 per rank row and (x A^T) Bt ~1e62, past f32's range,
// so the projection turns inf and the next norm or softmax NaN. The engine,
// scheduler and server tests use it to check that such a request fails
// alone and nothing else in its batch changes.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "common/status.h"

namespace loraserve::testing_util {

inline Status write_overflowing_adapter(const std::string& from, const std::string& to,
                                        float value = 1e30f) {
  LS_ASSIGN_OR_RETURN(auto file, SafetensorsFile::open(from + "/adapter_model.safetensors"));
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, info] : file->tensors()) {
    TensorToWrite t{name, info.dtype, info.shape, std::string(info.nbytes, '\0')};
    const std::vector<float> values(static_cast<size_t>(info.numel()), value);
    convert_from_f32(info.dtype, values.data(), t.bytes.data(), values.size());
    tensors.push_back(std::move(t));
  }
  std::error_code ec;
  std::filesystem::create_directories(to, ec);
  std::filesystem::copy_file(from + "/adapter_config.json", to + "/adapter_config.json",
                             std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return internal_error("cannot copy adapter_config.json: " + ec.message());
  return write_safetensors(to + "/adapter_model.safetensors", tensors, file->metadata());
}

}  // namespace loraserve::testing_util
