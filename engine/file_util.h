// Small helpers the loaders share: file checks and message formatting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loraserve {

// True for an existing regular file.
bool file_exists(const std::string& path);
// "[4096, 11008]" for error messages.
std::string shape_string(const std::vector<int64_t>& shape);
bool ends_with(const std::string& s, const std::string& suffix);

}  // namespace loraserve
