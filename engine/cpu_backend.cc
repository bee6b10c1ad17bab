#include "engine/cpu_backend.h"

namespace loraserve {

std::unique_ptr<Backend> create_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace loraserve
