#include "engine/backend.h"

namespace loraserve {

StatusOr<int64_t> choose_pool_bytes(const Backend& backend, int64_t pool_mb, double fraction) {
  if (pool_mb < 0) return invalid_argument("--pool-mb must not be negative");
  if (pool_mb > 0) return pool_mb << 20;
  if (!(fraction > 0.0 && fraction <= 0.95)) {
    return invalid_argument("--pool-fraction must be in (0, 0.95]");
  }
  const int64_t avail = backend.available_memory_bytes();
  if (avail <= 0) return internal_error("cannot tell how much memory the " + backend.name() + " backend has");
  return static_cast<int64_t>(static_cast<double>(avail) * fraction);
}

StatusOr<std::unique_ptr<Backend>> create_backend(const std::string& name) {
  if (name == "cpu" || name == "auto") {
    // The cuda backend arrives with the CUDA issue; until then "auto" is cpu.
    return create_cpu_backend();
  }
  if (name == "cuda") {
    return unimplemented("backend 'cuda' is not available in this build yet; use --backend cpu");
  }
  return invalid_argument("unknown backend '" + name + "' (expected auto, cpu or cuda)");
}

}  // namespace loraserve
