#include "engine/backend.h"

namespace loraserve {

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
