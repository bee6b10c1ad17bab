// Small file helpers every room that reads files shares (tokenizer,
// checkpoint, server, app), and message formatting for loaders.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace loraserve {

// The whole file as bytes. NOT_FOUND when it cannot be opened, DATA_LOSS
// when reading fails part-way.
StatusOr<std::string> read_file(const std::string& path);
// True for an existing regular file.
bool file_exists(const std::string& path);
// fsync of a directory, so that names just renamed into it survive a
// crash. 0, or the errno of the open or fsync that failed.
int fsync_dir(const std::string& dir);
// "[4096, 11008]" for error messages.
std::string shape_string(const std::vector<int64_t>& shape);
bool ends_with(const std::string& s, const std::string& suffix);

}  // namespace loraserve
