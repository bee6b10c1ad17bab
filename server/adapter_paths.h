// Resolving and reading adapters for the API: paths are confined to the
// server's --adapter-root (symlinks included), ids are checked, and files
// are validated against the base model before anything is registered.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "checkpoint/lora_adapter.h"
#include "checkpoint/model_config.h"

namespace loraserve {

// INVALID_ARGUMENT unless 1..128 characters of [A-Za-z0-9._:/-], not
// starting with '/' or '.'.
Status validate_adapter_id(const std::string& id);

// Resolves `relative` under `root`. FAILED_PRECONDITION when the server has
// no root, PERMISSION_DENIED for absolute paths or anything that resolves
// outside the root, NOT_FOUND when the directory does not exist.
StatusOr<std::string> resolve_adapter_dir(const std::string& root, const std::string& relative);

// Loads and validates; a base-model mismatch is FAILED_PRECONDITION.
StatusOr<std::unique_ptr<LoraAdapter>> load_adapter_dir(const std::string& dir,
                                                        const ModelConfig& base);

}  // namespace loraserve
