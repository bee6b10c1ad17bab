#include "server/adapter_paths.h"

#include <filesystem>

namespace loraserve {

namespace fs = std::filesystem;

Status validate_adapter_id(const std::string& id) {
  if (id.empty() || id.size() > 128) {
    return invalid_argument("adapter_id must be 1 to 128 characters");
  }
  if (id[0] == '/' || id[0] == '.') return invalid_argument("adapter_id must not start with '/' or '.'");
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == ':' || c == '/';
    if (!ok) return invalid_argument("adapter_id may only use letters, digits and . _ - : /");
  }
  return ok_status();
}

StatusOr<std::string> resolve_adapter_dir(const std::string& root, const std::string& relative) {
  if (root.empty()) {
    return failed_precondition("this server has no --adapter-root; upload the adapter instead");
  }
  if (relative.empty()) return invalid_argument("path is empty");
  if (fs::path(relative).is_absolute()) {
    return permission_denied("path must be relative to the adapter root");
  }
  std::error_code ec;
  const fs::path canon_root = fs::canonical(root, ec);
  if (ec) return internal_error("adapter root '" + root + "' is not accessible");
  const fs::path joined = canon_root / relative;
  // Lexical check first, so "../x" is refused even when it does not exist.
  const fs::path lexical = joined.lexically_normal();
  auto inside = [&](const fs::path& p) {
    auto r = canon_root.begin();
    auto q = p.begin();
    for (; r != canon_root.end(); ++r, ++q) {
      if (q == p.end() || *q != *r) return false;
    }
    return true;
  };
  if (!inside(lexical)) return permission_denied("path '" + relative + "' leaves the adapter root");
  const fs::path real = fs::canonical(joined, ec);
  if (ec) return not_found("no adapter directory '" + relative + "' under the adapter root");
  if (!inside(real)) {
    return permission_denied("path '" + relative + "' resolves outside the adapter root");
  }
  if (!fs::is_directory(real)) return not_found("'" + relative + "' is not a directory");
  return real.string();
}

StatusOr<std::unique_ptr<LoraAdapter>> load_adapter_dir(const std::string& dir,
                                                        const ModelConfig& base) {
  return LoraAdapter::load_dir(dir, base);
}

}  // namespace loraserve
